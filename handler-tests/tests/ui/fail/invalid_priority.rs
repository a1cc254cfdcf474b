use asyncjobs::task_handler;

#[task_handler("report:make", priority = 10)]
async fn too_high(_p: String) -> Result<(), asyncjobs::HandlerError> {
    Ok(())
}

#[task_handler("report:other", priority = -1)]
async fn negative(_p: String) -> Result<(), asyncjobs::HandlerError> {
    Ok(())
}

#[task_handler("report:third", priority = "high")]
async fn not_a_number(_p: String) -> Result<(), asyncjobs::HandlerError> {
    Ok(())
}

fn main() {}
