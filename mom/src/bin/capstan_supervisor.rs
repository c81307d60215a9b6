//! The MOM's per-run helpers on their own (see `capstan_mom::supervisor`):
//! what `pbs_mom --capstan-supervise EXIT_FILE` and `pbs_mom --capstan-deliver`
//! do, in a binary a tenth of `pbs_mom`'s size. A supervisor is exec'd per
//! job, and loading the MOM's 6 MB (relocations, page faults) cost more CPU
//! than everything else the supervisor does. The MOM uses this binary when it
//! sits beside `pbs_mom`, else `pbs_mom` itself.

fn main() {
    // The same command lines as the MOM's fallback, so a MOM recognises its
    // supervisors in /proc whichever binary runs them.
    let code = capstan_mom::supervisor::run_helper().unwrap_or_else(|| {
        eprintln!(
            "capstan_supervisor: started by pbs_mom only ({} EXIT_FILE, {} or {})",
            capstan_mom::supervisor::SUPERVISE_ARG,
            capstan_mom::spawner::SPAWNER_ARG,
            capstan_mom::deliver::DELIVER_ARG
        );
        2
    });
    std::process::exit(code);
}
