//! Unit tests of [`Service`](super::Service): the `AJ_*` settings and the
//! usage text.

use super::*;
use std::collections::HashMap;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| m.get(k).cloned()
}

#[test]
fn the_environment_overrides_the_packaged_settings() {
    let s = Service::new("x")
        .queue("EMAIL")
        .nats_context("CTX")
        .retry_policy("10m");
    let d = s.settings(env(&[])).unwrap();
    assert_eq!(
        (
            d.queue.as_str(),
            d.nats_context.as_str(),
            d.retry_policy.as_str()
        ),
        ("EMAIL", "CTX", "10m")
    );
    assert_eq!(d.metrics, "0.0.0.0:8080".parse().unwrap());
    assert!(!d.debug);
    assert_eq!(d.otlp_endpoint, None);
    let o = s
        .settings(env(&[
            ("AJ_WORK_QUEUE", "OTHER"),
            ("AJ_NATS_CONTEXT", "C2"),
            ("AJ_CONCURRENCY", "7"),
            ("AJ_DEBUG", "1"),
            ("AJ_RETRY_POLICY", "1h"),
            ("AJ_METRICS_PORT", "0"),
            ("AJ_METRICS_BIND", "127.0.0.1"),
            ("AJ_COMMANDS_DIR", "/c"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
        ]))
        .unwrap();
    assert_eq!(
        (o.queue.as_str(), o.nats_context.as_str(), o.concurrency),
        ("OTHER", "C2", 7)
    );
    assert!(o.debug);
    assert_eq!(o.retry_policy, "1h");
    assert_eq!(o.metrics, "127.0.0.1:0".parse().unwrap());
    assert_eq!(o.commands_dir, PathBuf::from("/c"));
    assert_eq!(o.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4318"));
}

#[test]
fn bad_settings_name_the_variable() {
    let s = Service::new("x");
    for (k, v) in [
        ("AJ_CONCURRENCY", "0"),
        ("AJ_CONCURRENCY", "many"),
        ("AJ_RETRY_POLICY", "2d"),
        ("AJ_METRICS_PORT", "99999"),
        ("AJ_METRICS_BIND", "example.net"),
    ] {
        let e = s.settings(env(&[(k, v)])).unwrap_err();
        assert!(e.contains(k), "{e}");
    }
}

#[test]
fn usage_lists_the_handlers() {
    let u = Service::new("svc")
        .handler("a")
        .command("b", "b/run.sh")
        .remote("c")
        .usage();
    assert!(u.contains(" - a: #[task_handler] in a linked crate"), "{u}");
    assert!(
        u.contains(" - b: using command /handler/commands/b/run.sh"),
        "{u}"
    );
    assert!(u.contains(" - c: remote request-reply service"), "{u}");
}
