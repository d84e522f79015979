//! Producer benchmarks (placeholder: the `[[bench]]` target in Cargo.toml
//! needs this file; the real benchmark is written with the producer core).

fn main() {
    eprintln!("producer benchmark: not implemented yet");
}
