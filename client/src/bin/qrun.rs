//! qrun: start queued jobs now (Torque-compatible; managers and operators). All logic lives
//! in [`capstan_client::jobctl::qrun`].

fn main() {
    let args = capstan_client::getopt::args();
    std::process::exit(capstan_client::jobctl::qrun(&args));
}
