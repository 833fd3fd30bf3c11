//! One module per subcommand, each with its arguments and one `run`.

pub mod health;
pub mod publish;
pub mod serve;
pub mod subscribe;
