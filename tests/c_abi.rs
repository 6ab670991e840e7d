//! Compiles `tests/c/test_keyledger.c` against `include/keyledger.h` and the cdylib
//! (`libkeyledger.so`), runs it on a temporary vault, and runs it again under valgrind
//! (leaks and memory errors) when valgrind is installed; in CI (`KEYLEDGER_REQUIRE_ALL` or
//! `CI`) a missing valgrind fails the test.
//!
//! Run alone with `cargo test --test c_abi -- --nocapture`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding `libkeyledger.so`: the profile directory this test was built
/// into (`<target>/debug`, found from the test executable, which lives in `deps/`), else
/// `$CARGO_TARGET_DIR/debug` or `target/debug`.
fn lib_dir() -> PathBuf {
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf))
    {
        if dir.join("deps").is_dir() {
            return dir;
        }
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| manifest_dir().join("target"), PathBuf::from)
        .join("debug")
}

/// The `libkeyledger.so` to test. `cargo test` builds the lib with all its crate types
/// into `<profile>/deps/` but copies it up to `<profile>/` only on `cargo build`, so the
/// one in `deps/` is the one built from this source and is preferred; without either,
/// run `cargo build --lib`.
fn cdylib() -> PathBuf {
    let dir = lib_dir();
    let candidates = [
        dir.join("deps").join("libkeyledger.so"),
        dir.join("libkeyledger.so"),
    ];
    if !candidates.iter().any(|p| p.exists()) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--lib"])
            .current_dir(manifest_dir())
            .status()
            .expect("cargo build --lib should run");
        assert!(status.success(), "cargo build --lib failed");
    }
    let so = candidates
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no libkeyledger.so under {}", dir.display()));
    println!("linking {}", so.display());
    so
}

fn show(what: &str, out: &Output) {
    println!("--- {what}: {}", out.status);
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
}

/// Compile the C test program into `dir`.
fn compile(dir: &Path) -> PathBuf {
    // Link (and load, through the rpath) a private copy, so that neither cargo's
    // LD_LIBRARY_PATH nor another build in the same target dir (maturin's Python build
    // also writes a libkeyledger.so) decides which library the program runs against.
    let so = cdylib();
    let lib_dir = dir;
    std::fs::copy(&so, lib_dir.join("libkeyledger.so")).expect("copy the cdylib");
    let exe = dir.join("test_keyledger");
    let root = manifest_dir();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g"])
        .arg("-I")
        .arg(root.join("include"))
        .arg(root.join("tests/c/test_keyledger.c"))
        .arg("-L")
        .arg(lib_dir)
        .args(["-lkeyledger", "-lpthread"])
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("a C compiler (cc) should be installed");
    show("cc", &out);
    assert!(out.status.success(), "the C test program did not compile");
    exe
}

fn assert_passed(out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        last.starts_with("c_abi: ") && last.ends_with(" passed, 0 failed"),
        "unexpected summary line {last:?}"
    );
}

#[test]
fn c_program_passes_against_the_header_and_the_cdylib() {
    let dir = tempfile::tempdir().unwrap();
    let exe = compile(dir.path());
    let vault = dir.path().join("c.redb");
    let out = Command::new(&exe)
        .arg(&vault)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    show("test_keyledger", &out);
    assert!(out.status.success(), "the C tests failed");
    assert_passed(&out);

    let valgrind = Command::new("valgrind").arg("--version").output();
    if !valgrind.is_ok_and(|o| o.status.success()) {
        common::skip_unless_required(
            "the valgrind leak check of the C tests",
            "valgrind is not installed (apt-get install valgrind)",
        );
        return;
    }
    let vault = dir.path().join("valgrind.redb");
    let out = Command::new("valgrind")
        .args([
            "--quiet",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "--error-exitcode=99",
        ])
        .arg(&exe)
        .arg(&vault)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    show("valgrind test_keyledger", &out);
    assert!(
        out.status.success(),
        "valgrind found memory errors or definite leaks (exit {})",
        out.status
    );
    assert_passed(&out);
}

/// `scripts/install-c --from <this build> PREFIX`, then the C test program compiled with
/// `pkg-config --cflags --libs keyledger` only: it links the installed library through
/// its versioned SONAME, and the header's version macros agree with `kl_version()`.
#[test]
fn installed_prefix_builds_c_programs_through_pkg_config() {
    if Command::new("pkg-config")
        .arg("--version")
        .output()
        .is_err()
    {
        common::skip_unless_required(
            "the pkg-config install test",
            "pkg-config is not installed (apt-get install pkg-config)",
        );
        return;
    }
    let from = lib_dir().join("deps");
    let from = if from.join("libkeyledger.a").exists() {
        from
    } else {
        cdylib(); // builds the lib (all crate types) when nothing is there
        lib_dir()
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("prefix");
    let out = Command::new("bash")
        .arg(manifest_dir().join("scripts/install-c"))
        .arg("--from")
        .arg(&from)
        .arg(&prefix)
        .output()
        .unwrap();
    show("scripts/install-c", &out);
    assert!(out.status.success(), "scripts/install-c failed");
    let lib = prefix.join("lib");
    assert!(lib.join("libkeyledger.a").is_file());
    assert!(prefix.join("include/keyledger.h").is_file());

    let flags = Command::new("pkg-config")
        .args(["--cflags", "--libs", "keyledger"])
        .env("PKG_CONFIG_PATH", lib.join("pkgconfig"))
        .output()
        .unwrap();
    show("pkg-config --cflags --libs keyledger", &flags);
    assert!(flags.status.success(), "pkg-config does not know keyledger");
    let flags: Vec<String> = String::from_utf8(flags.stdout)
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let version_c = dir.path().join("version.c");
    std::fs::write(
        &version_c,
        "#include <keyledger.h>\n#include <stdio.h>\n#include <string.h>\n\
         int main(void) {\n\
         \x20 char want[64];\n\
         \x20 snprintf(want, sizeof want, \"%d.%d.%d\", KEYLEDGER_VERSION_MAJOR,\n\
         \x20          KEYLEDGER_VERSION_MINOR, KEYLEDGER_VERSION_PATCH);\n\
         \x20 printf(\"%s %s %s\\n\", KEYLEDGER_VERSION_STRING, want, kl_version());\n\
         \x20 return strcmp(want, KEYLEDGER_VERSION_STRING) || strcmp(kl_version(), KEYLEDGER_VERSION_STRING);\n\
         }\n",
    )
    .unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    for (src, exe) in [
        (
            manifest_dir().join("tests/c/test_keyledger.c"),
            "test_keyledger",
        ),
        (version_c, "version"),
    ] {
        let exe = dir.path().join(exe);
        let out = Command::new(&cc)
            .args(["-std=c11", "-Wall", "-Wextra", "-Werror"])
            .arg(&src)
            .args(&flags)
            .arg("-lpthread")
            .arg(format!("-Wl,-rpath,{}", lib.display()))
            .arg("-o")
            .arg(&exe)
            .output()
            .expect("a C compiler (cc) should be installed");
        show("cc (pkg-config flags)", &out);
        assert!(out.status.success(), "{} did not compile", src.display());
        let elf = Command::new("readelf").arg("-d").arg(&exe).output();
        if let Ok(elf) = elf {
            let text = String::from_utf8_lossy(&elf.stdout);
            // The ABI number: the major version, or major.minor while it is 0.
            let abi = match env!("CARGO_PKG_VERSION_MAJOR") {
                "0" => format!("0.{}", env!("CARGO_PKG_VERSION_MINOR")),
                major => major.to_string(),
            };
            let soname = format!("libkeyledger.so.{abi}");
            assert!(
                text.contains(&format!("[{soname}]")),
                "the program should need the versioned SONAME {soname}:\n{text}"
            );
        }
    }
    let out = Command::new(dir.path().join("version"))
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    show("version", &out);
    assert!(
        out.status.success(),
        "the header's version macros and kl_version() disagree"
    );
    let out = Command::new(dir.path().join("test_keyledger"))
        .arg(dir.path().join("c.redb"))
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    show("test_keyledger (installed prefix)", &out);
    assert!(
        out.status.success(),
        "the C tests failed against the installed library"
    );
    assert_passed(&out);
}
