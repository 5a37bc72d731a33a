//! The HTTP/1.x request head check (`intake::framing::parse`) on arbitrary bytes: it must
//! never panic, and what it accepts must be framed consistently.
#![no_main]

use gatehouse::config::model::ClientLimits;
use gatehouse::intake::framing::{parse, Body, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let small = ClientLimits {
        max_request_line: 1024,
        max_header_size: 1024,
        max_headers: 8,
        ..ClientLimits::default()
    };
    for limits in [ClientLimits::default(), small] {
        if let Ok(Parsed::Complete(head)) = parse(data, &limits) {
            assert!(head.len <= data.len(), "a head longer than the input");
            assert!(
                &data[..head.len].ends_with(b"\n"),
                "a head must end with its blank line"
            );
            // A complete head stays complete, with the same framing, whatever follows it.
            let mut longer = data[..head.len].to_vec();
            longer.extend_from_slice(b"GARBAGE\r\n\r\n");
            match parse(&longer, &limits) {
                Ok(Parsed::Complete(again)) => {
                    assert_eq!(again, head);
                }
                other => panic!("complete, then {other:?} with more bytes"),
            }
            if let Body::Length(n) = head.body {
                assert!(n > 0, "Content-Length: 0 is no body");
            }
        }
    }
});
