//! Profile and credential parsing: `kubevision_proto::credential::check_phc`
//! (Argon2id PHC strings), the service's operator-id and display-name
//! checks (`kubevision_proto::text`, the rule the kiosk shares), and an
//! `OperatorProfile` decoded from protobuf bytes, checked
//! (`kubevision_proto::profile`) and encoded as Enroll stores it. The first byte picks which.
//! Properties: an accepted PHC string's costs are within the bounds;
//! the checks are idempotent (what comes back is accepted again, as is);
//! a stored profile reads back and is stored unchanged.
#![no_main]

use kubevision_offload::service::fuzzing::{
    check_display_name, check_operator_id, decode_profile, encode_profile,
};
use kubevision_proto::credential::{self, check_phc};
use kubevision_proto::v1::OperatorProfile;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(accepted) = check_phc(text) {
                assert!((credential::MIN_MEMORY_KIB..=credential::MAX_MEMORY_KIB)
                    .contains(&accepted.memory_kib));
                assert!(
                    (credential::MIN_PASSES..=credential::MAX_PASSES).contains(&accepted.passes)
                );
                assert!((credential::MIN_LANES..=credential::MAX_LANES).contains(&accepted.lanes));
            }
        }
        1 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(id) = check_operator_id(text) {
                let again = check_operator_id(&id).map_err(|e| e.to_string());
                assert_eq!(again.as_deref(), Ok(id.as_str()), "operator id {text:?}");
            }
            if let Ok(name) = check_display_name(text) {
                let again = check_display_name(&name).map_err(|e| e.to_string());
                assert_eq!(again.as_deref(), Ok(name.as_str()), "display name {text:?}");
            }
        }
        _ => {
            let Ok(profile) = OperatorProfile::decode(rest) else {
                return;
            };
            let Ok(stored) = encode_profile(&profile) else {
                return;
            };
            let back = decode_profile(&stored).expect("a stored profile reads back");
            let again = encode_profile(&back).map_err(|e| e.to_string());
            assert_eq!(again, Ok(stored), "storing is idempotent");
        }
    }
});
