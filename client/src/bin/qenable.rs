//! qenable: let a queue take new jobs (Torque-compatible). All logic lives in
//! [`capstan_client::queuectl`].

use capstan_client::queuectl::{run, Switch};

fn main() {
    let args = capstan_client::getopt::args();
    std::process::exit(run(Switch::Enable, &args));
}
