//! The committed C header `include/keyledger.h` must be exactly what cbindgen generates
//! from `src/ffi/` with `cbindgen.toml`.
//!
//! Regenerate it with `KEYLEDGER_REGENERATE_HEADER=1 cargo test --test ffi_header` (or
//! `cargo test --test ffi_header -- --ignored regenerate`).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn header_path() -> PathBuf {
    root().join("include").join("keyledger.h")
}

fn generate() -> String {
    let root = root();
    let mut config = cbindgen::Config::from_file(root.join("cbindgen.toml"))
        .expect("cbindgen.toml should parse");
    // The version macros first, then cbindgen.toml's `after_includes` (the initializers).
    let extra = config.after_includes.take().unwrap_or_default();
    config.after_includes = Some(format!("{}\n\n{extra}", version_macros()));
    let bindings = cbindgen::generate_with_config(&root, config)
        .expect("cbindgen should generate the header from src/ffi");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("the header is UTF-8")
}

/// The version macros, from Cargo.toml's version (cbindgen.toml cannot compute them): a
/// version bump makes the committed header stale until it is regenerated.
fn version_macros() -> String {
    format!(
        "\n/* The version of keyledger this header belongs to (kl_version() gives the library's). */\n\
         #define KEYLEDGER_VERSION_MAJOR {}\n\
         #define KEYLEDGER_VERSION_MINOR {}\n\
         #define KEYLEDGER_VERSION_PATCH {}\n\
         #define KEYLEDGER_VERSION_STRING \"{}\"",
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH"),
        env!("CARGO_PKG_VERSION"),
    )
}

#[test]
fn header_carries_the_crate_version_macros() {
    let header = std::fs::read_to_string(header_path()).unwrap();
    let want = format!(
        "#define KEYLEDGER_VERSION_STRING \"{}\"",
        env!("CARGO_PKG_VERSION")
    );
    assert!(header.contains(&want), "the header lacks {want}");
    for part in ["MAJOR", "MINOR", "PATCH"] {
        assert!(
            header.contains(&format!("#define KEYLEDGER_VERSION_{part} ")),
            "the header lacks KEYLEDGER_VERSION_{part}"
        );
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    println!("wrote {}", path.display());
}

#[test]
fn committed_header_matches_the_generated_one() {
    let generated = generate();
    let path = header_path();
    if std::env::var_os("KEYLEDGER_REGENERATE_HEADER").is_some_and(|v| v == "1") {
        write(&path, &generated);
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || committed.lines().count().min(generated.lines().count()) + 1,
                |i| i + 1,
            );
        panic!(
            "include/keyledger.h is stale (first difference at line {line}): run \
             `cargo test --test ffi_header -- --ignored regenerate` or \
             `KEYLEDGER_REGENERATE_HEADER=1 cargo test --test ffi_header`"
        );
    }
}

#[test]
#[ignore = "writes include/keyledger.h; run on purpose to regenerate it"]
fn regenerate() {
    write(&header_path(), &generate());
}

#[test]
fn header_declares_the_abi_conventions() {
    let h = generate();
    for needle in [
        "#ifndef KEYLEDGER_H",
        "#include <stdint.h>",
        "#include <stdbool.h>",
        "#include <stddef.h>",
        "typedef struct kl_vault kl_vault;",
        "KL_OK = 0,",
        "KL_INVALID_API_KEY = 1001,",
        "KL_VAULT_CLOSED = 2007,",
        "KL_PANIC = 9001,",
        "kl_status kl_authorize(",
        "void kl_vault_free(",
        "void kl_secret_free(",
        "extern \"C\" {",
    ] {
        assert!(h.contains(needle), "generated header lacks {needle:?}");
    }
}

#[test]
fn header_exports_only_kl_names() {
    let h = generate();
    for line in h.lines() {
        if let Some(rest) = line.strip_prefix("#define ") {
            let name = rest.split_whitespace().next().unwrap_or("");
            assert!(
                name.starts_with("KL_")
                    || name == "KEYLEDGER_H"
                    || name.starts_with("KEYLEDGER_VERSION_"),
                "{name} leaked into the C header: exclude it in cbindgen.toml [export]"
            );
        }
        if let Some(rest) = line.strip_prefix("typedef ") {
            assert!(
                rest.contains("kl_"),
                "a non-kl_ type leaked into the C header: {line}"
            );
        }
    }
}
