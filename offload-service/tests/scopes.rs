//! Issue 22, "a scope model where a kiosk cannot raise itself or anyone
//! else": each attack of findings 3, 5 and 12 replayed over gRPC on
//! loopback against the real server, with per-kiosk identities.
//!
//! * finding 3: an `enrol` identity (every kiosk that pushes its
//!   enrolments holds one) appended its face to an administrator and set
//!   PIN and password hashes of its choosing, without the plant pepper;
//! * finding 5: `identify` listed every personnel number
//!   (`max_candidates = 100`), a forged SUCCEEDED report lifted a
//!   plant-wide lock, and forged FAILED reports locked everyone out;
//! * finding 12: a Cyrillic `Р-1042` beside a Latin `P-1042`, a foreign
//!   `keyid`, and a hash that takes 10 s to verify.

use std::path::Path;

use crate::common::*;
use kubevision_offload::identity::token_sha256_hex;
use kubevision_offload_client::proto::credential::Kind;
use kubevision_offload_client::proto::operator_profile::Role;
use kubevision_offload_client::proto::update_operator_request::Mode;
use kubevision_offload_client::proto::{
    sync_event, Credential, EnrollRequest, IdentifyRequest, OperatorProfile, SignInOutcome,
    UpdateOperatorRequest,
};
use kubevision_offload_client::{BreakerPolicy, ClientConfig, ClientError, OffloadClient};
use tonic::Code;

const ADMIN_TOKEN: &str = "61646d696e2d746f6f6c2d746f6b656e2d6f662d33322d62797465732121212";
const STATION_TOKEN: &str = "656e726f6c2d73746174696f6e2d746f6b656e2d6f662d33322d6279746573";
const KIOSK_A_TOKEN: &str = "6b696f736b2d612d746f6b656e2d6f662d33322d62797465732121212121212";
const KIOSK_B_TOKEN: &str = "6b696f736b2d622d746f6b656e2d6f662d33322d62797465732121212121212";

/// The plant pepper's key id, as `--plant-pepper-id` takes it and as a
/// PHC string's `keyid` carries it (base64 of the same 8 bytes).
const PLANT_PEPPER_ID: &str = "0102030405060708";
const PLANT_KEYID: &str = "AQIDBAUGBwg";
const SALT_HASH: &str = "$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

fn phc(params: &str) -> String {
    format!("$argon2id$v=19${params}{SALT_HASH}")
}

/// A hash as a registered kiosk makes it: keyed with the plant pepper.
fn plant_phc(hash: &str) -> String {
    format!("$argon2id$v=19$m=19456,t=2,p=1,keyid={PLANT_KEYID}$c2FsdHNhbHQ${hash}")
}

fn profile(role: Role, pin_phc: &str) -> OperatorProfile {
    OperatorProfile {
        display_name: "Ada Admin".into(),
        role: role as i32,
        credentials: vec![Credential {
            kind: Kind::Pin as i32,
            phc: pin_phc.into(),
        }],
    }
}

async fn start(dir: &Path) -> InProcess {
    let identities = dir.join("identities.json");
    std::fs::write(
        &identities,
        format!(
            r#"{{ "identities": [
  {{ "name": "admin-tool", "scopes": ["admin"], "token_sha256": "{}" }},
  {{ "name": "enrol-station", "scopes": ["enrol"], "token_sha256": "{}" }},
  {{ "name": "kiosk-a", "scopes": ["identify", "sync"], "token_sha256": "{}" }},
  {{ "name": "kiosk-b", "scopes": ["identify", "sync"], "token_sha256": "{}" }}
] }}"#,
            token_sha256_hex(ADMIN_TOKEN),
            token_sha256_hex(STATION_TOKEN),
            token_sha256_hex(KIOSK_A_TOKEN),
            token_sha256_hex(KIOSK_B_TOKEN),
        ),
    )
    .unwrap();
    InProcess::start(config(
        &dir.join("data"),
        &[
            &format!("--identities={}", identities.display()),
            &format!("--plant-pepper-id={PLANT_PEPPER_ID}"),
        ],
    ))
    .await
}

/// A client that neither retries nor opens its circuit on refusals: each
/// call's answer is the server's.
fn client(server: &InProcess, token: &str) -> OffloadClient {
    let mut config = ClientConfig::new(server.url());
    config.retry.max_attempts = 1;
    config.breaker = BreakerPolicy {
        failure_threshold: u32::MAX,
        ..BreakerPolicy::default()
    };
    config.token = Some(token.into());
    OffloadClient::new(config).unwrap()
}

fn enrollment(person: u32, id: &str, profile: Option<OperatorProfile>) -> EnrollRequest {
    EnrollRequest {
        operator_id: id.into(),
        frames: (1..=3).map(|photo| orl_raw(person, photo)).collect(),
        profile,
        ..Default::default()
    }
}

fn refused(result: Result<impl std::fmt::Debug, ClientError>, code: Code, words: &str) {
    let err = result.expect_err(words);
    assert_eq!(err.code(), Some(code), "{err}");
    assert!(err.to_string().contains(words), "{words:?} in: {err}");
}

/// An operator's templates and profile as the gallery of record holds them.
async fn stored(admin: &OffloadClient, id: &str) -> (usize, Option<OperatorProfile>) {
    let sync = admin.sync_gallery(0).await.unwrap();
    sync.changes
        .into_iter()
        .find_map(|event| match event {
            sync_event::Event::Upsert(up) if up.operator_id == id => {
                Some((up.templates.len(), up.profile))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("{id} is enrolled"))
}

/// Finding 3: before, each of these calls by the enrol station succeeded,
/// and the attacker's photos then identified as the administrator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrol_cannot_take_over_an_administrator_or_change_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let admin = client(&server, ADMIN_TOKEN);
    let station = client(&server, STATION_TOKEN);
    let boss = operator(1);
    let original = profile(Role::Administrator, &plant_phc("aGFzaGhhc2hoYXNoaGFzaA"));
    admin
        .enroll(enrollment(1, &boss, Some(original.clone())))
        .await
        .unwrap();
    let before = stored(&admin, &boss).await;

    // The attacker's face appended to the administrator, with their own
    // PIN and password hashes (keyed or not).
    let mut takeover = original.clone();
    takeover.credentials = vec![
        Credential {
            kind: Kind::Pin as i32,
            phc: plant_phc("YXR0YWNrZXJhdHRhY2tlcg"),
        },
        Credential {
            kind: Kind::Password as i32,
            phc: phc("m=19456,t=2,p=1"),
        },
    ];
    let update = |profile: Option<OperatorProfile>, mode: Mode| UpdateOperatorRequest {
        operator_id: boss.clone(),
        frames: (1..=3).map(|photo| orl_raw(2, photo)).collect(),
        profile,
        mode: mode as i32,
        ..Default::default()
    };
    let denied = "identity \"enrol-station\" may not change \"orl-01\", an administrator: that needs the \"admin\" scope";
    for attempt in [
        update(Some(takeover.clone()), Mode::Append),
        update(None, Mode::Append),
        update(None, Mode::Replace),
        UpdateOperatorRequest {
            operator_id: boss.clone(),
            profile: Some(takeover.clone()),
            ..Default::default()
        },
    ] {
        refused(
            station.update_operator(attempt).await,
            Code::PermissionDenied,
            denied,
        );
    }
    refused(
        station.remove_operator(boss.clone()).await,
        Code::PermissionDenied,
        "may not remove \"orl-01\", an administrator",
    );
    // Nor may it make an administrator or a maintenance account.
    for role in [Role::Administrator, Role::Maintenance] {
        refused(
            station
                .enroll(enrollment(
                    3,
                    "orl-03",
                    Some(profile(role, &plant_phc("aGFzaGhhc2hoYXNoaGFzaA"))),
                ))
                .await,
            Code::PermissionDenied,
            "kiosks may enrol operators only",
        );
    }
    assert_eq!(stored(&admin, &boss).await, before, "nothing changed");

    // What enrol is for still works: a new operator, and more of their face.
    let worker = operator(3);
    let theirs = profile(Role::Operator, &plant_phc("aGFzaGhhc2hoYXNoaGFzaA"));
    station
        .enroll(enrollment(3, &worker, Some(theirs.clone())))
        .await
        .unwrap();
    let appended = station
        .update_operator(UpdateOperatorRequest {
            operator_id: worker.clone(),
            frames: vec![orl_raw(3, 4)],
            profile: Some(theirs.clone()),
            mode: Mode::Append as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(appended.template_count > 0);
    // But not their PIN, and not a replacement of their face.
    let mut new_pin = theirs.clone();
    new_pin.credentials[0].phc = plant_phc("bmV3bmV3bmV3bmV3bmV3bg");
    refused(
        station
            .update_operator(UpdateOperatorRequest {
                operator_id: worker.clone(),
                profile: Some(new_pin.clone()),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "may not change the PIN or password hashes of \"orl-03\"",
    );
    let mut promoted = theirs.clone();
    promoted.role = Role::Administrator as i32;
    refused(
        station
            .update_operator(UpdateOperatorRequest {
                operator_id: worker.clone(),
                profile: Some(promoted),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "may not change the role of \"orl-03\"",
    );
    // admin may.
    admin
        .update_operator(UpdateOperatorRequest {
            operator_id: worker.clone(),
            profile: Some(new_pin.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stored(&admin, &worker).await.1, Some(new_pin));
    server.stop().await;
}

/// Findings 3 and 12: a hash without the plant pepper's key id, with
/// another pepper's, or too dear to verify on a kiosk is refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashes_must_be_keyed_with_the_plant_pepper_and_affordable() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let admin = client(&server, ADMIN_TOKEN);
    let cases = [
        (phc("m=19456,t=2,p=1"), "keyid is missing"),
        (
            phc("m=19456,t=2,p=1,keyid=CQkJCQkJCQk"),
            "keyid is 0909090909090909, not the plant pepper's 0102030405060708",
        ),
        // The costliest hash accepted before: about 10 s a verification.
        (
            phc(&format!("m=262144,t=16,p=8,keyid={PLANT_KEYID}")),
            "m (memory, KiB) is 262144",
        ),
        (
            phc(&format!("m=65536,t=6,p=1,keyid={PLANT_KEYID}")),
            "m×t (memory times passes) is 65536×6",
        ),
    ];
    for (hash, words) in cases {
        let result = admin
            .enroll(enrollment(
                1,
                "orl-01",
                Some(profile(Role::Operator, &hash)),
            ))
            .await;
        refused(result, Code::InvalidArgument, words);
    }
    admin
        .enroll(enrollment(
            1,
            "orl-01",
            Some(profile(
                Role::Operator,
                &plant_phc("aGFzaGhhc2hoYXNoaGFzaA"),
            )),
        ))
        .await
        .unwrap();
    server.stop().await;
}

/// Finding 12: `Р-1042` (Cyrillic Er) was enrolled beside `P-1042`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_personnel_number_that_looks_like_an_enrolled_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let admin = client(&server, ADMIN_TOKEN);
    admin.enroll(enrollment(1, "P-1042", None)).await.unwrap();
    refused(
        admin.enroll(enrollment(2, "\u{0420}-1042", None)).await,
        Code::InvalidArgument,
        "operator_id \"\u{0420}-1042\" could pass for the existing \"P-1042\" (the same confusable skeleton, Unicode TS #39)",
    );
    admin.enroll(enrollment(2, "P-1043", None)).await.unwrap();
    server.stop().await;
}

/// Finding 5: `max_candidates = 100` listed every personnel number to any
/// kiosk; a sign-in decides on each frame's nearest operator only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identify_answers_what_a_sign_in_needs_and_no_more() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let admin = client(&server, ADMIN_TOKEN);
    let kiosk = client(&server, KIOSK_A_TOKEN);
    for person in 1..=4 {
        admin
            .enroll(enrollment(person, &operator(person), None))
            .await
            .unwrap();
    }
    let identify = |max_candidates| IdentifyRequest {
        frames: vec![orl_raw(2, 9)],
        max_candidates,
        ..Default::default()
    };
    refused(
        kiosk.identify(identify(100)).await,
        Code::PermissionDenied,
        "may not ask for 100 candidates a frame; a sign-in needs 1",
    );
    refused(
        kiosk.identify(identify(2)).await,
        Code::PermissionDenied,
        "that needs the \"admin\" scope",
    );
    let answer = kiosk.identify(identify(1)).await.unwrap();
    assert!(answer.frames.iter().all(|f| f.candidates.len() <= 1));
    assert_eq!(answer.operator_id, operator(2));
    // An administrator's tool may still look further.
    let answer = admin.identify(identify(4)).await.unwrap();
    assert_eq!(answer.frames[0].candidates.len(), 4);
    server.stop().await;
}

/// Finding 5: ten forged FAILED reports for each operator locked the whole
/// plant out in 0.1 s, and one forged SUCCEEDED report lifted a lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_reports_are_bounded_per_identity_and_a_success_lifts_no_lock() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let admin = client(&server, ADMIN_TOKEN);
    let (a, b) = (
        client(&server, KIOSK_A_TOKEN),
        client(&server, KIOSK_B_TOKEN),
    );
    let ids: Vec<String> = (1..=5).map(operator).collect();
    for (person, id) in (1..).zip(&ids) {
        admin.enroll(enrollment(person, id, None)).await.unwrap();
    }
    // kiosk-a forges failures for everyone, as fast as it can.
    let mut counted = 0;
    let mut refusal = None;
    'forging: for _ in 0..10 {
        for id in &ids {
            match a.report_sign_in(id.clone(), SignInOutcome::Failed).await {
                Ok(_) => counted += 1,
                Err(e) => {
                    refusal = Some(e);
                    break 'forging;
                }
            }
        }
    }
    assert_eq!(counted, 30, "the bound per identity and minute");
    let refusal = refusal.expect("refused past the bound");
    assert_eq!(refusal.code(), Some(Code::ResourceExhausted), "{refusal}");
    assert!(
        refusal
            .to_string()
            .contains("identity \"kiosk-a\" sent more than 30 sign-in reports in 60 s"),
        "{refusal}"
    );
    // Six failures each lock all five for a while, no more: before, every
    // operator reached the 15-minute ceiling.
    let locked = b.lockouts().await.unwrap();
    assert_eq!(locked.len(), 5, "{locked:?}");
    assert!(
        locked
            .iter()
            .all(|l| l.failures == 6 && l.locked_for_ms <= 8 * 60_000),
        "{locked:?}"
    );
    // Another kiosk is not held back by kiosk-a's bound, and its forged
    // success does not lift the lock.
    let standing = b
        .report_sign_in(ids[0].clone(), SignInOutcome::Succeeded)
        .await
        .unwrap();
    assert_eq!(standing.failures, 6);
    assert!(standing.locked_for_ms > 0, "{standing:?}");
    assert!(b
        .lockouts()
        .await
        .unwrap()
        .iter()
        .any(|l| l.operator_id == ids[0]));
    server.stop().await;
}
