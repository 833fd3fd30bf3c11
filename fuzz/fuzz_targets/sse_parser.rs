//! The SSE client parser (`cmd::subscribe::SseParser`): any bytes, cut into
//! chunks anywhere, give the same messages as the whole stream fed at once.
//!
//! Input: a byte that sets the chunk size (1 to 16), then the stream.

#![no_main]

use std::ops::ControlFlow;

use libfuzzer_sys::fuzz_target;
use logagg::cmd::subscribe::SseParser;

fuzz_target!(|data: &[u8]| {
    let Some((&size, stream)) = data.split_first() else {
        return;
    };
    let whole = parse(&[stream]);
    let chunks: Vec<&[u8]> = stream.chunks(usize::from(size % 16) + 1).collect();
    assert_eq!(parse(&chunks), whole);
});

fn parse(chunks: &[&[u8]]) -> Vec<(Option<String>, String)> {
    let mut parser = SseParser::default();
    let mut messages = Vec::new();
    for chunk in chunks {
        let flow: ControlFlow<()> = parser.feed(chunk, |message| {
            messages.push((message.id.map(str::to_owned), message.data.to_owned()));
            ControlFlow::Continue(())
        });
        assert!(flow.is_continue());
    }
    messages
}
