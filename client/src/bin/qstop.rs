//! qstop: stop scheduling the jobs of a queue (running ones go on) (Torque-compatible). All logic lives in
//! [`capstan_client::queuectl`].

use capstan_client::queuectl::{run, Switch};

fn main() {
    let args = capstan_client::getopt::args();
    std::process::exit(run(Switch::Stop, &args));
}
