//! One module per subcommand, each with its arguments and one `run`, plus
//! what they share: [`client`] for the commands that talk to a server,
//! [`read`] for the reading commands (`events`, `topics`, `stats`), and
//! `ShutdownSignal`.

pub mod backup;
pub mod client;
pub mod events;
pub mod export;
pub mod health;
pub mod migrate;
pub mod publish;
pub mod read;
pub mod serve;
pub mod stats;
pub mod subscribe;
pub mod tls;
pub mod topics;

/// SIGTERM or SIGINT (Ctrl-C), the signals every long-running command stops
/// on. Installed up front, so a failure to install is an error at start,
/// not a command that cannot be stopped.
pub(crate) struct ShutdownSignal {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    /// Installs the handlers.
    ///
    /// # Errors
    /// When the OS refuses a signal handler.
    pub(crate) fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                terminate: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Resolves on the first of the signals.
    pub(crate) async fn recv(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
