//! Loads this package's shared library with `dlopen(3)` and reads and
//! writes its cache from several threads (see `src/lib.rs`).

#![cfg(target_os = "linux")]

use std::ffi::{CStr, CString};
use std::path::PathBuf;

/// `libcoherent_dlopen.so` beside this test's executable in
/// `target/<profile>/deps/`, which cargo builds before it runs the test
/// (the package's library is also a `cdylib`).
fn library() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let lib = exe.with_file_name("libcoherent_dlopen.so");
    assert!(lib.exists(), "{} was not built", lib.display());
    lib
}

struct Library(*mut libc::c_void);

impl Library {
    fn open(path: &std::path::Path) -> Self {
        let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string; the library's initialisers are Rust's
        // std and ours, which have no preconditions.
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            // SAFETY: dlerror returns a C string or null, valid until the
            // next dl call on this thread.
            let err = unsafe { libc::dlerror() };
            let msg = if err.is_null() {
                "unknown".to_owned()
            } else {
                // SAFETY: as above, non-null.
                unsafe { CStr::from_ptr(err) }
                    .to_string_lossy()
                    .into_owned()
            };
            panic!("dlopen {}: {msg}", path.display());
        }
        Self(handle)
    }

    /// The address of `name`, which must be defined.
    fn symbol(&self, name: &str) -> *mut libc::c_void {
        let c = CString::new(name).unwrap();
        // SAFETY: a handle from dlopen, still open (never closed: the
        // library stays loaded for the test's life), and a valid C string.
        let f = unsafe { libc::dlsym(self.0, c.as_ptr()) };
        assert!(!f.is_null(), "{name} not found");
        f
    }

    /// One of the library's `extern "C" fn(u64) -> u64` functions.
    fn function(&self, name: &str) -> extern "C" fn(u64) -> u64 {
        // SAFETY: src/lib.rs defines each `name` asked for with this type.
        unsafe { std::mem::transmute::<*mut libc::c_void, _>(self.symbol(name)) }
    }
}

#[test]
fn a_cache_in_a_dlopened_library_reads_its_writes_on_every_thread() {
    let lib = Library::open(&library());
    // SAFETY: src/lib.rs defines it as `extern "C" fn(u64, u64) -> u64`.
    let insert: extern "C" fn(u64, u64) -> u64 =
        unsafe { std::mem::transmute(lib.symbol("coherent_dlopen_insert")) };
    let get = lib.function("coherent_dlopen_get");
    let get_on_new_thread = lib.function("coherent_dlopen_get_on_new_thread");
    assert_eq!(get(1), u64::MAX, "nothing inserted yet");
    for k in 0..1000 {
        assert_eq!(insert(k, k * 3), 0);
    }
    // This thread, threads this program starts, threads the library starts.
    for k in [0, 1, 999] {
        assert_eq!(get(k), k * 3);
        assert_eq!(get_on_new_thread(k), k * 3);
    }
    let readers: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                (0..1000u64)
                    .filter(|k| get((k + t) % 1000) == ((k + t) % 1000) * 3)
                    .count()
            })
        })
        .collect();
    for r in readers {
        assert_eq!(r.join().unwrap(), 1000);
    }
    assert_eq!(insert(5, 7), 0);
    assert_eq!(get(5), 7, "a write is seen by the next read");
    assert_eq!(get_on_new_thread(5), 7);
}
