// Several problems in one handler are reported together.
use asyncjobs::task_handler;

#[task_handler("bad type", colour = "blue")]
fn everything_wrong<T>() -> String {
    String::new()
}

fn main() {}
