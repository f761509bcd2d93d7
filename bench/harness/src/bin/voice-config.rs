//! Prints the voice configuration the routing benchmarks use (bench/compare workload e, and
//! `icount route`): 10 dial plans of 100 rules, 500 routes, 10 trunks to one gateway.
//!
//!   voice-config HOST:PORT   the gateway every trunk goes to

fn main() {
    let Some(gateway) = std::env::args().nth(1) else {
        eprintln!("usage: voice-config HOST:PORT");
        std::process::exit(64);
    };
    let text = confab_bench::voice_config(10, 100, 500, &gateway);
    // a closed pipe (`| head`) is not an error worth a panic
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
}
