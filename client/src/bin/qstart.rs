//! qstart: let the jobs of a queue be scheduled (Torque-compatible). All logic lives in
//! [`capstan_client::queuectl`].

use capstan_client::queuectl::{run, Switch};

fn main() {
    let args = capstan_client::getopt::args();
    std::process::exit(run(Switch::Start, &args));
}
