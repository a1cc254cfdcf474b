// A `pub` handler whose payload type is less visible than the handler: its
// `enqueue` would be usable where the payload cannot be named. The error
// is at the payload type.
mod jobs {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Secret {
        n: u8,
    }

    #[asyncjobs::task_handler("secret")]
    pub async fn reveal(s: Secret) -> Result<u8, asyncjobs::HandlerError> {
        Ok(s.n)
    }
}

fn main() {}
