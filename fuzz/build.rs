//! Linking a prebuilt RocksDB (`ROCKSDB_LIB_DIR`, see `.ci/fuzz`): librocksdb-sys then
//! links only `librocksdb.a`, not the C++ standard library it needs, which its own
//! build adds when it compiles RocksDB. A link argument goes after every library, where
//! the linker still resolves RocksDB's references to it.
fn main() {
    println!("cargo:rerun-if-env-changed=ROCKSDB_LIB_DIR");
    if std::env::var_os("ROCKSDB_LIB_DIR").is_some() {
        println!("cargo:rustc-link-arg=-lstdc++");
    }
}
