//! A `?filter=` expression from a client: parsed and evaluated over a health listing element, a
//! clear error or an answer, never a panic; `not (E)` answers the opposite of `E`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use murmur::http::filter::Filter;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(f) = Filter::new(text) else {
        return;
    };
    let element = json!({
        "Node": {"Node": "a", "Address": "10.0.0.1", "Meta": {"rack": "r1"}, "TaggedAddresses": null},
        "Service": {"ID": "web", "Service": "web", "Tags": ["primary"], "Port": 80,
                    "Meta": {"version": "1"}, "EnableTagOverride": false,
                    "Weights": {"Passing": 1, "Warning": 1}},
        "Checks": [{"CheckID": "serfHealth", "Status": "passing"}, {"CheckID": "c", "Status": "critical"}],
        "Empty": [],
    });
    let Ok(answer) = f.matches(&element) else {
        return;
    };
    match Filter::new(&format!("not ({text})")) {
        Ok(negated) => assert_eq!(
            negated.matches(&element),
            Ok(!answer),
            "not flips the answer"
        ),
        // Wrapping adds nesting; nothing else may stop it.
        Err(e) => assert!(e.to_string().contains("nested too deeply"), "{e}"),
    }
});
