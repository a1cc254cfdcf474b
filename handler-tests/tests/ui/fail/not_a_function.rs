use asyncjobs::task_handler;

#[task_handler("email:new")]
struct SendEmail;

fn main() {}
