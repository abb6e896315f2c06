//! Empty: Cargo considers a package's build-dependencies only when it has a build script,
//! and the feature unification lists some (`cargo hakari` generates both).
fn main() {}
