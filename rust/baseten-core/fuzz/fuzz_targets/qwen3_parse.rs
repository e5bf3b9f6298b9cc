// SPDX-License-Identifier: Apache-2.0

//! `qwen3::parse` on arbitrary text: exactly `transcript::parse` (which the `transcript`
//! target holds to its docs), except that a transcription's language, when it is a name
//! Qwen3-ASR lists, becomes that language's code.

#![no_main]

use baseten_core::qwen3::{language_code, language_name, parse};
use baseten_core::transcript::{self, ServerMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = std::str::from_utf8(data) else { return };
    let (got, whisper) = match (parse(json), transcript::parse(json)) {
        (Ok(got), Ok(whisper)) => (got, whisper),
        (Err(a), Err(b)) => return assert_eq!(a.to_string(), b.to_string()),
        (got, whisper) => panic!("{got:?} where the Whisper reading gives {whisper:?}"),
    };
    match (got, whisper) {
        (ServerMessage::Transcription(mut t), ServerMessage::Transcription(w)) => {
            let sent = w.language.as_deref();
            let expected = sent.map(|l| language_code(l).unwrap_or(l));
            assert_eq!(t.language.as_deref(), expected, "language of {sent:?}");
            if let Some(code) = sent.and_then(language_code) {
                let name = language_name(code).expect("a code from the list has a name");
                assert!(name.eq_ignore_ascii_case(sent.unwrap_or_default().trim()));
            }
            t.language = w.language.clone();
            assert_eq!(t, w, "only the language may differ");
        }
        (got, whisper) => assert_eq!(got, whisper),
    }
});
