//! qterm: stop the server (Torque-compatible; operators and managers). All logic lives in
//! [`capstan_client::qterm`].

fn main() {
    let args = capstan_client::getopt::args();
    std::process::exit(capstan_client::qterm::run(&args));
}
