//! Host calls wrapped so that a host error is logged and absorbed, never a panic (a panic
//! would take the whole Wasm VM down).

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, Status};

use crate::header_pairs::HeaderPairs;

use crate::http::Response;

/// Unix time in milliseconds from Envoy's clock.
pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[link(wasm_import_module = "env")]
extern "C" {
    /// The ABI call behind the SDK's `get_map_bytes`, whose reader copies every header.
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
}

/// All request headers, read in place (`HeaderPairs`); values that are not UTF-8 are replaced
/// lossily (they can then only fail checks, never pass them).
pub fn request_headers() -> HeaderPairs {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer to `size` bytes that it allocated through the SDK's
    // `proxy_on_memory_allocate` (a `Vec<u8>` of exactly that capacity, from this module's
    // allocator), and hands their ownership over; the SDK's `get_map_bytes` takes them the
    // same way.
    let status =
        unsafe { proxy_get_header_map_pairs(MapType::HttpRequestHeaders, &mut data, &mut size) };
    match status {
        Status::Ok if !data.is_null() => {
            HeaderPairs::parse(unsafe { Vec::from_raw_parts(data, size, size) })
        }
        Status::Ok => HeaderPairs::default(),
        status => {
            log::warn!("mcp-oauth: cannot read request headers: {status:?}");
            HeaderPairs::default()
        }
    }
}

/// The downstream peer address (`ip:port`), for rate limits.
pub fn source_address() -> Option<String> {
    hostcalls::get_property(vec!["source", "address"])
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
}

/// The buffered request body (the body callback paused until the end of the stream).
pub fn request_body(size: usize) -> Vec<u8> {
    hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// A header of the answer to a `dispatch_http_call`. Read as bytes: the answer comes from
/// another server, and a value that is not UTF-8 must not panic (it is converted lossily).
pub fn call_response_header(name: &str) -> Option<String> {
    hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, name)
        .ok()
        .flatten()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// The body of the answer to a `dispatch_http_call`, up to `max` bytes.
pub fn call_response_body(max: usize) -> Vec<u8> {
    hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, max)
        .ok()
        .flatten()
        .unwrap_or_default()
}

pub fn send_response(response: &Response) {
    let headers: Vec<(&str, &str)> = response
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let body = (!response.body.is_empty()).then_some(response.body.as_slice());
    if let Err(status) = hostcalls::send_http_response(u32::from(response.status), headers, body) {
        log::warn!("mcp-oauth: cannot send a local response: {status:?}");
    }
}

pub fn remove_request_header(name: &str) {
    if let Err(status) = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name) {
        log::warn!("mcp-oauth: cannot remove request header {name}: {status:?}");
    }
}

/// Adds a request header (Envoy's add is cheaper than its replace, which searches first).
pub fn add_request_header(name: &str, value: &str) {
    if let Err(status) = hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value) {
        log::warn!("mcp-oauth: cannot add request header {name}: {status:?}");
    }
}

pub fn response_header(name: &str) -> Option<String> {
    hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, name)
        .ok()
        .flatten()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

pub fn remove_response_header(name: &str) {
    if let Err(status) = hostcalls::remove_map_value(MapType::HttpResponseHeaders, name) {
        log::warn!("mcp-oauth: cannot remove response header {name}: {status:?}");
    }
}

/// The response body seen by this callback (all of it when the callbacks paused until now).
pub fn response_body(size: usize) -> Vec<u8> {
    hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Replaces the first `size` bytes of the response body seen by this callback.
pub fn replace_response_body(size: usize, value: &[u8]) {
    if let Err(status) = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, value) {
        log::warn!("mcp-oauth: cannot rewrite the response body: {status:?}");
    }
}

pub fn response_header_present(name: &str) -> bool {
    matches!(
        hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, name),
        Ok(Some(_))
    )
}

pub fn add_response_header(name: &str, value: &str) {
    if let Err(status) = hostcalls::add_map_value(MapType::HttpResponseHeaders, name, value) {
        log::warn!("mcp-oauth: cannot add response header {name}: {status:?}");
    }
}

pub fn resume_request() {
    if let Err(status) = hostcalls::resume_http_request() {
        log::warn!("mcp-oauth: cannot resume a request: {status:?}");
    }
}
