//! A `pub(crate)` handler with `pub(crate)` types, in a private module, used
//! from the crate root.
#![deny(warnings)]

mod jobs {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    pub(crate) struct Resize {
        pub(crate) width: u32,
    }

    #[asyncjobs::task_handler("image:resize")]
    pub(crate) async fn resize(r: Resize) -> Result<u32, asyncjobs::HandlerError> {
        Ok(r.width)
    }
}

fn main() {
    let task = jobs::resize::task(&jobs::Resize { width: 3 }).build().unwrap();
    assert_eq!(task.task_type, "image:resize");
    let _: jobs::resize::Payload = jobs::Resize { width: 1 };
    let _ = jobs::resize::enqueue;
    let _ = jobs::resize::TYPED;
    assert_eq!(asyncjobs::Handlers::registered().len(), 1);
}
