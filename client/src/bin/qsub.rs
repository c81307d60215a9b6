//! qsub: submit a batch job (Torque-compatible). All logic lives in [`capstan_client::qsub`].

fn main() {
    let args = capstan_client::getopt::args();
    std::process::exit(capstan_client::qsub::run(&args));
}
