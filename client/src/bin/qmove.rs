//! qmove: move jobs to another queue (Torque-compatible). All logic lives in
//! [`capstan_client::jobctl`].

use capstan_client::jobctl::{run, Command};

fn main() {
    let args = capstan_client::getopt::args();
    std::process::exit(run(Command::Qmove, &args));
}
