//! Any text either parses, and then its canonical form parses back to the
//! same selector with the same ID, or fails with an offset inside the input.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use twill_selector::Selector;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Selector::parse(text) {
        Ok(selector) => {
            let canonical = selector.to_string();
            let reparsed = Selector::parse(&canonical).expect("canonical text parses");
            assert_eq!(reparsed, selector, "canonical text {canonical:?}");
            assert_eq!(reparsed.to_string(), canonical);
            assert_eq!(reparsed.id(), selector.id());
            let labels = BTreeMap::from([("a".to_string(), "b".to_string())]);
            assert_eq!(selector.matches(&labels), reparsed.matches(&labels));
        }
        Err(e) => assert!(
            e.offset <= text.len(),
            "offset {} past the end of {text:?}",
            e.offset
        ),
    }
});
