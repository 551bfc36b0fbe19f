//! A simulated proxy-wasm host: just enough of Envoy's ABI for the filter to start with a
//! plugin configuration and decide requests, so the same Rust code Envoy runs can be profiled
//! natively. Arguments: CONFIG_JSON TOKEN REQUESTS. Each request is `GET /mcp` with
//! `Authorization: Bearer TOKEN` and the headers Envoy adds, run through the same callbacks
//! Envoy makes (context create, request headers, response headers, log, done, delete).
#![allow(clippy::missing_safety_doc)]

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

extern crate mcp_oauth_wasm;

extern "C" {
    fn _initialize();
    fn proxy_on_context_create(context_id: u32, root_context_id: u32);
    fn proxy_on_vm_start(context_id: u32, size: usize) -> bool;
    fn proxy_on_configure(context_id: u32, size: usize) -> bool;
    fn proxy_on_request_headers(context_id: u32, num: usize, eos: bool) -> u32;
    fn proxy_on_response_headers(context_id: u32, num: usize, eos: bool) -> u32;
    fn proxy_on_log(context_id: u32);
    fn proxy_on_done(context_id: u32) -> bool;
    fn proxy_on_delete(context_id: u32);
    fn proxy_on_memory_allocate(size: usize) -> *mut u8;
}

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;

#[derive(Default)]
struct Host {
    config: Vec<u8>,
    request: Vec<(String, String)>,
    response: Vec<(String, String)>,
    shared: Vec<(Vec<u8>, Vec<u8>, u32)>,
    metrics: Vec<(String, u64)>,
    sent_local_response: Option<u32>,
}

thread_local! {
    static HOST: RefCell<Host> = RefCell::new(Host::default());
}

unsafe fn bytes<'a>(data: *const u8, size: usize) -> &'a [u8] {
    if size == 0 {
        &[]
    } else {
        std::slice::from_raw_parts(data, size)
    }
}

unsafe fn give(value: &[u8], out: *mut *mut u8, out_size: *mut usize) {
    let p = proxy_on_memory_allocate(value.len());
    std::ptr::copy_nonoverlapping(value.as_ptr(), p, value.len());
    *out = p;
    *out_size = value.len();
}

/// The header map as the host serializes it (the crate's own writer, which its reader is
/// tested against).
fn serialize(map: &[(String, String)]) -> Vec<u8> {
    mcp_oauth_wasm::header_pairs::serialize(map.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
}

fn with_map<T>(map_type: u32, f: impl FnOnce(&mut Vec<(String, String)>) -> T) -> Option<T> {
    HOST.with(|h| {
        let mut h = h.borrow_mut();
        match map_type {
            0 => Some(f(&mut h.request)),
            2 => Some(f(&mut h.response)),
            _ => None,
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn proxy_log(_level: u32, data: *const u8, size: usize) -> u32 {
    let _ = bytes(data, size);
    OK
}
#[no_mangle]
pub unsafe extern "C" fn proxy_get_log_level(level: *mut u32) -> u32 {
    *level = 2;
    OK
}
#[no_mangle]
pub unsafe extern "C" fn proxy_get_current_time_nanoseconds(t: *mut u64) -> u32 {
    *t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    OK
}
#[no_mangle]
pub extern "C" fn proxy_set_tick_period_milliseconds(_p: u32) -> u32 {
    OK
}
#[no_mangle]
pub unsafe extern "C" fn proxy_get_buffer_bytes(
    buffer_type: u32,
    _start: usize,
    _max: usize,
    out: *mut *mut u8,
    out_size: *mut usize,
) -> u32 {
    if buffer_type == 7 {
        let config = HOST.with(|h| h.borrow().config.clone());
        give(&config, out, out_size);
        OK
    } else {
        NOT_FOUND
    }
}
#[no_mangle]
pub extern "C" fn proxy_set_buffer_bytes(_t: u32, _s: usize, _z: usize, _d: *const u8, _n: usize) -> u32 {
    NOT_FOUND
}
#[no_mangle]
pub unsafe extern "C" fn proxy_get_header_map_pairs(map_type: u32, out: *mut *mut u8, out_size: *mut usize) -> u32 {
    match with_map(map_type, |m| serialize(m)) {
        Some(data) => {
            give(&data, out, out_size);
            OK
        }
        None => NOT_FOUND,
    }
}
#[no_mangle]
pub extern "C" fn proxy_set_header_map_pairs(_t: u32, _d: *const u8, _n: usize) -> u32 {
    NOT_FOUND
}
#[no_mangle]
pub unsafe extern "C" fn proxy_get_header_map_value(
    map_type: u32,
    key: *const u8,
    key_size: usize,
    out: *mut *mut u8,
    out_size: *mut usize,
) -> u32 {
    let key = String::from_utf8_lossy(bytes(key, key_size)).into_owned();
    match with_map(map_type, |m| m.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())).flatten() {
        Some(v) => {
            give(v.as_bytes(), out, out_size);
            OK
        }
        None => NOT_FOUND,
    }
}
#[no_mangle]
pub unsafe extern "C" fn proxy_remove_header_map_value(map_type: u32, key: *const u8, key_size: usize) -> u32 {
    let key = String::from_utf8_lossy(bytes(key, key_size)).into_owned();
    with_map(map_type, |m| m.retain(|(k, _)| *k != key));
    OK
}
/// Sets (`replace`) or adds a header, as the host does.
unsafe fn put_header(map_type: u32, key: (*const u8, usize), value: (*const u8, usize), replace: bool) -> u32 {
    let key = String::from_utf8_lossy(bytes(key.0, key.1)).into_owned();
    let value = String::from_utf8_lossy(bytes(value.0, value.1)).into_owned();
    with_map(map_type, |m| {
        if replace {
            m.retain(|(k, _)| *k != key);
        }
        m.push((key, value));
    });
    OK
}
#[no_mangle]
pub unsafe extern "C" fn proxy_replace_header_map_value(
    map_type: u32,
    key: *const u8,
    key_size: usize,
    value: *const u8,
    value_size: usize,
) -> u32 {
    put_header(map_type, (key, key_size), (value, value_size), true)
}
#[no_mangle]
pub unsafe extern "C" fn proxy_add_header_map_value(
    map_type: u32,
    key: *const u8,
    key_size: usize,
    value: *const u8,
    value_size: usize,
) -> u32 {
    put_header(map_type, (key, key_size), (value, value_size), false)
}
#[no_mangle]
pub unsafe extern "C" fn proxy_get_property(_p: *const u8, _n: usize, _o: *mut *mut u8, _s: *mut usize) -> u32 {
    NOT_FOUND
}
#[no_mangle]
pub extern "C" fn proxy_set_property(_p: *const u8, _n: usize, _v: *const u8, _s: usize) -> u32 {
    OK
}
#[no_mangle]
pub unsafe extern "C" fn proxy_get_shared_data(
    key: *const u8,
    key_size: usize,
    out: *mut *mut u8,
    out_size: *mut usize,
    cas: *mut u32,
) -> u32 {
    let key = bytes(key, key_size).to_vec();
    let found = HOST.with(|h| h.borrow().shared.iter().find(|(k, _, _)| *k == key).map(|(_, v, c)| (v.clone(), *c)));
    match found {
        Some((v, c)) => {
            give(&v, out, out_size);
            *cas = c;
            OK
        }
        None => NOT_FOUND,
    }
}
#[no_mangle]
pub unsafe extern "C" fn proxy_set_shared_data(key: *const u8, key_size: usize, value: *const u8, value_size: usize, _cas: u32) -> u32 {
    let key = bytes(key, key_size).to_vec();
    let value = bytes(value, value_size).to_vec();
    HOST.with(|h| {
        let mut h = h.borrow_mut();
        if let Some(e) = h.shared.iter_mut().find(|(k, _, _)| *k == key) {
            e.1 = value;
            e.2 += 1;
        } else {
            h.shared.push((key, value, 1));
        }
    });
    OK
}
#[no_mangle]
pub extern "C" fn proxy_register_shared_queue(_n: *const u8, _s: usize, _id: *mut u32) -> u32 {
    NOT_FOUND
}
#[no_mangle]
pub extern "C" fn proxy_resolve_shared_queue(_a: *const u8, _b: usize, _c: *const u8, _d: usize, _id: *mut u32) -> u32 {
    NOT_FOUND
}
#[no_mangle]
pub extern "C" fn proxy_dequeue_shared_queue(_q: u32, _o: *mut *mut u8, _s: *mut usize) -> u32 {
    NOT_FOUND
}
#[no_mangle]
pub extern "C" fn proxy_enqueue_shared_queue(_q: u32, _v: *const u8, _s: usize) -> u32 {
    NOT_FOUND
}
#[no_mangle]
pub extern "C" fn proxy_continue_stream(_t: u32) -> u32 {
    OK
}
#[no_mangle]
pub extern "C" fn proxy_close_stream(_t: u32) -> u32 {
    OK
}
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn proxy_send_local_response(
    status: u32,
    _a: *const u8,
    _b: usize,
    _c: *const u8,
    _d: usize,
    _e: *const u8,
    _f: usize,
    _g: i32,
) -> u32 {
    HOST.with(|h| h.borrow_mut().sent_local_response = Some(status));
    OK
}
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn proxy_http_call(
    _a: *const u8,
    _b: usize,
    _c: *const u8,
    _d: usize,
    _e: *const u8,
    _f: usize,
    _g: *const u8,
    _h: usize,
    _t: u32,
    _r: *mut u32,
) -> u32 {
    NOT_FOUND
}
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn proxy_grpc_call(
    _a: *const u8,
    _b: usize,
    _c: *const u8,
    _d: usize,
    _e: *const u8,
    _f: usize,
    _g: *const u8,
    _h: usize,
    _i: *const u8,
    _j: usize,
    _t: u32,
    _r: *mut u32,
) -> u32 {
    NOT_FOUND
}
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn proxy_grpc_stream(
    _a: *const u8,
    _b: usize,
    _c: *const u8,
    _d: usize,
    _e: *const u8,
    _f: usize,
    _g: *const u8,
    _h: usize,
    _r: *mut u32,
) -> u32 {
    NOT_FOUND
}
#[no_mangle]
pub extern "C" fn proxy_grpc_send(_t: u32, _m: *const u8, _l: usize, _e: bool) -> u32 {
    NOT_FOUND
}
#[no_mangle]
pub extern "C" fn proxy_grpc_cancel(_t: u32) -> u32 {
    NOT_FOUND
}
#[no_mangle]
pub extern "C" fn proxy_grpc_close(_t: u32) -> u32 {
    NOT_FOUND
}
#[no_mangle]
pub extern "C" fn proxy_get_status(_c: *mut u32, _d: *mut *mut u8, _s: *mut usize) -> u32 {
    NOT_FOUND
}
#[no_mangle]
pub extern "C" fn proxy_set_effective_context(_c: u32) -> u32 {
    OK
}
#[no_mangle]
pub extern "C" fn proxy_call_foreign_function(
    _a: *const u8,
    _b: usize,
    _c: *const u8,
    _d: usize,
    _e: *mut *mut u8,
    _f: *mut usize,
) -> u32 {
    NOT_FOUND
}
#[no_mangle]
pub extern "C" fn proxy_done() -> u32 {
    OK
}
#[no_mangle]
pub unsafe extern "C" fn proxy_define_metric(_t: u32, name: *const u8, size: usize, id: *mut u32) -> u32 {
    let name = String::from_utf8_lossy(bytes(name, size)).into_owned();
    HOST.with(|h| {
        let mut h = h.borrow_mut();
        h.metrics.push((name, 0));
        *id = h.metrics.len() as u32 - 1;
    });
    OK
}
#[no_mangle]
pub unsafe extern "C" fn proxy_get_metric(id: u32, value: *mut u64) -> u32 {
    *value = HOST.with(|h| h.borrow().metrics.get(id as usize).map(|m| m.1).unwrap_or(0));
    OK
}
#[no_mangle]
pub extern "C" fn proxy_record_metric(id: u32, value: u64) -> u32 {
    HOST.with(|h| {
        if let Some(m) = h.borrow_mut().metrics.get_mut(id as usize) {
            m.1 = value;
        }
    });
    OK
}
#[no_mangle]
pub extern "C" fn proxy_increment_metric(id: u32, offset: i64) -> u32 {
    HOST.with(|h| {
        if let Some(m) = h.borrow_mut().metrics.get_mut(id as usize) {
            m.1 = m.1.wrapping_add(offset as u64);
        }
    });
    OK
}

fn request_headers(token: &str) -> Vec<(String, String)> {
    [
        (":authority", "127.0.0.1:10000"),
        (":path", "/mcp"),
        (":method", "GET"),
        (":scheme", "http"),
        ("authorization", &format!("Bearer {token}")),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "8a1f7c2e-3b5d-4c6a-9e0f-1d2c3b4a5f6e"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// One request through the callbacks Envoy makes; returns what the filter did.
#[inline(never)]
fn one_request(context_id: u32, headers: &[(String, String)]) -> (u32, Option<u32>) {
    HOST.with(|h| {
        let mut h = h.borrow_mut();
        h.request = headers.to_vec();
        h.response = vec![(":status".into(), "200".into()), ("content-length".into(), "3".into())];
        h.sent_local_response = None;
    });
    unsafe {
        proxy_on_context_create(context_id, 1);
        let action = proxy_on_request_headers(context_id, headers.len(), true);
        proxy_on_response_headers(context_id, 2, false);
        proxy_on_log(context_id);
        proxy_on_done(context_id);
        proxy_on_delete(context_id);
        (action, HOST.with(|h| h.borrow().sent_local_response))
    }
}

/// The measured loop (callgrind: `--toggle-collect=*measured_requests*`).
#[inline(never)]
fn measured_requests(first_id: u32, count: u32, headers: &[(String, String)]) {
    for i in 0..count {
        let (action, local) = one_request(first_id + i, headers);
        if action != 0 || local.is_some() {
            eprintln!("request {i}: action {action}, local response {local:?}");
            std::process::exit(1);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, config, token, count] = args.as_slice() else {
        eprintln!("usage: bench-glue-profile CONFIG_JSON TOKEN REQUESTS");
        std::process::exit(2);
    };
    let count: u32 = count.parse().unwrap_or(1000);
    HOST.with(|h| h.borrow_mut().config = config.as_bytes().to_vec());
    unsafe {
        _initialize();
        proxy_on_context_create(1, 0);
        if !proxy_on_vm_start(1, 0) || !proxy_on_configure(1, config.len()) {
            eprintln!("the filter refused its configuration");
            std::process::exit(1);
        }
    }
    let headers = request_headers(token);
    // Warm-up, not counted: the first request verifies the token and fills the token cache.
    for id in 2..12 {
        one_request(id, &headers);
    }
    measured_requests(100, count, &headers);
    let forwarded = HOST.with(|h| h.borrow().request.clone());
    println!("{count} requests forwarded; last forwarded headers:");
    for (k, v) in forwarded {
        let shown = if k == "authorization" { "(present)".to_string() } else { v };
        println!("  {k}: {shown}");
    }
}
