//! Handlers in nested private modules with private types: a private one
//! used inside its module, a `pub(super)` one used from the parent, a
//! `pub(in crate::outer)` one two levels down and a `pub(self)` one.
#![deny(warnings)]

use serde::{Deserialize, Serialize};

mod jobs {
    use super::{Deserialize, Serialize};

    // private to `jobs`
    #[derive(Serialize, Deserialize)]
    struct Audit {
        n: u8,
    }

    #[asyncjobs::task_handler("audit")]
    async fn audit(a: Audit) -> Result<u8, asyncjobs::HandlerError> {
        Ok(a.n)
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct Notify {
        pub(super) to: String,
    }

    #[asyncjobs::task_handler("notify")]
    pub(super) async fn notify(n: Notify) -> Result<String, asyncjobs::HandlerError> {
        Ok(n.to)
    }

    #[derive(Serialize, Deserialize)]
    struct Local(u8);

    #[asyncjobs::task_handler("local")]
    pub(self) async fn local(l: Local) -> Result<u8, asyncjobs::HandlerError> {
        Ok(l.0)
    }

    pub(super) fn use_private() -> (String, String) {
        let _ = audit::enqueue;
        let _ = local::enqueue;
        let a = audit::task(&Audit { n: 1 }).build().unwrap().task_type;
        let l = local::task(&Local(2)).build().unwrap().task_type;
        (a, l)
    }
}

mod outer {
    mod inner {
        use serde::{Deserialize, Serialize};

        #[derive(Serialize, Deserialize)]
        pub(in crate::outer) struct Deep {
            pub(in crate::outer) n: u8,
        }

        #[asyncjobs::task_handler("deep")]
        pub(in crate::outer) async fn deep(d: Deep) -> Result<u8, asyncjobs::HandlerError> {
            Ok(d.n)
        }

        #[derive(Serialize, Deserialize)]
        pub(super) struct Up(pub(super) u8);

        #[asyncjobs::task_handler("up")]
        pub(in super) async fn up(u: Up) -> Result<u8, asyncjobs::HandlerError> {
            Ok(u.0)
        }
    }

    pub(super) fn use_inner() -> (String, String) {
        let _ = inner::deep::enqueue;
        let _ = inner::up::enqueue;
        let d = inner::deep::task(&inner::Deep { n: 1 }).build().unwrap().task_type;
        let u = inner::up::task(&inner::Up(2)).build().unwrap().task_type;
        (d, u)
    }
}

// a payload type private to the crate root, used by a private handler there
#[derive(Serialize, Deserialize)]
struct Root(u8);

#[asyncjobs::task_handler("root")]
async fn root(r: Root) -> Result<u8, asyncjobs::HandlerError> {
    Ok(r.0)
}

fn main() {
    assert_eq!(jobs::use_private(), ("audit".to_string(), "local".to_string()));
    assert_eq!(outer::use_inner(), ("deep".to_string(), "up".to_string()));
    // the parent uses the `pub(super)` handler's helpers
    let _ = jobs::notify::enqueue;
    let task = jobs::notify::task(&jobs::Notify { to: "a".into() }).build().unwrap();
    assert_eq!(task.task_type, jobs::notify::TASK_TYPE);
    let _ = root::task(&Root(1));
    let _ = root::enqueue;
    assert_eq!(asyncjobs::Handlers::registered().len(), 6);
}
