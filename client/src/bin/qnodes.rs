//! `qnodes`: Torque's other name for `pbsnodes`, the same program (its messages name it by
//! the name it was called by, as Torque's do).

#[path = "pbsnodes.rs"]
mod pbsnodes;

fn main() -> std::process::ExitCode {
    pbsnodes::main()
}
