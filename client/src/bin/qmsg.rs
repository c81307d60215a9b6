//! qmsg: write a message into running jobs' output (Torque-compatible). All logic lives in
//! [`capstan_client::jobctl`].

use capstan_client::jobctl::{run, Command};

fn main() {
    let args = capstan_client::getopt::args();
    std::process::exit(run(Command::Qmsg, &args));
}
