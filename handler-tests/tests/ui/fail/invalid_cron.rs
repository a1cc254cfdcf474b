use asyncjobs::{task_handler, HandlerError};

#[task_handler("report:daily", cron = "0 3 * * 7")]
async fn bad_weekday(_p: ()) -> Result<(), HandlerError> {
    Ok(())
}

#[task_handler("report:hourly", cron = "0 * * *")]
async fn four_fields(_p: ()) -> Result<(), HandlerError> {
    Ok(())
}

#[task_handler("report:often", cron = "@every 10x")]
async fn bad_every(_p: ()) -> Result<(), HandlerError> {
    Ok(())
}

#[task_handler("report:weekly", cron = 5)]
async fn not_a_string(_p: ()) -> Result<(), HandlerError> {
    Ok(())
}

#[task_handler("", cron = "@daily")]
async fn catch_all(_p: ()) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
