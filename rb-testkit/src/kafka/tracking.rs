//! The record of requests the mock brokers received: the one place of this crate that calls
//! librdkafka's C API directly.
//!
//! librdkafka's mock cluster can record every request its brokers receive (broker id, API key,
//! receive time), but rdkafka 0.39 exposes neither that feature nor the raw mock-cluster pointer of
//! its `MockCluster` wrapper. The fake therefore lets a client created with `test.mock.num.brokers`
//! own the mock cluster and reaches the cluster through that client's handle
//! (`rd_kafka_handle_mock_cluster`), which needs `unsafe` FFI calls into rdkafka-sys. Every function
//! here borrows the owning client, so the cluster pointer never outlives the client that destroys
//! the cluster, and librdkafka serialises all the calls used here with the cluster's own lock.
#![allow(unsafe_code)]

use std::ptr::NonNull;

use rdkafka::client::Client;
use rdkafka::ClientContext;
use rdkafka_sys as rdsys;

use super::requests::KafkaRequest;

/// The mock cluster owned by `client`, if the client was created with `test.mock.num.brokers`.
fn cluster<C: ClientContext>(
    client: &Client<C>,
) -> Option<NonNull<rdsys::rd_kafka_mock_cluster_t>> {
    // SAFETY: `native_ptr` is the live `rd_kafka_t` handle `client` owns (it is valid as long as the
    // borrow of `client`); `rd_kafka_handle_mock_cluster` only reads the handle's mock-cluster field
    // and returns NULL for a client without an internal mock cluster.
    let raw = unsafe { rdsys::rd_kafka_handle_mock_cluster(client.native_ptr()) };
    NonNull::new(raw)
}

/// Starts recording the requests of the mock cluster owned by `client` (and empties the record).
/// Returns `false` if the client owns no mock cluster.
pub(crate) fn start<C: ClientContext>(client: &Client<C>) -> bool {
    let Some(mcluster) = cluster(client) else {
        return false;
    };
    // SAFETY: `mcluster` is the non-null cluster owned by `client`, alive for the borrow of
    // `client` (the client destroys it only when dropped); the call takes the cluster's lock.
    unsafe { rdsys::rd_kafka_mock_start_request_tracking(mcluster.as_ptr()) };
    true
}

/// Empties the record. Returns `false` if the client owns no mock cluster.
pub(crate) fn clear<C: ClientContext>(client: &Client<C>) -> bool {
    let Some(mcluster) = cluster(client) else {
        return false;
    };
    // SAFETY: as in `start`: a live cluster owned by the borrowed client; the call takes its lock.
    unsafe { rdsys::rd_kafka_mock_clear_requests(mcluster.as_ptr()) };
    true
}

/// A copy of the record, oldest request first (`None` if the client owns no mock cluster).
pub(crate) fn snapshot<C: ClientContext>(client: &Client<C>) -> Option<Vec<KafkaRequest>> {
    let mcluster = cluster(client)?;
    let mut count: usize = 0;
    // SAFETY: a live cluster owned by the borrowed client; `count` is a valid, writable `usize`.
    // The call copies the record under the cluster's lock into a newly allocated array of `count`
    // newly allocated requests (NULL when `count` is 0) that the caller owns and frees below.
    let array = unsafe { rdsys::rd_kafka_mock_get_requests(mcluster.as_ptr(), &mut count) };
    if array.is_null() || count == 0 {
        return Some(Vec::new());
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        // SAFETY: `array` is non-null and holds exactly `count` elements (see above), so index
        // `i < count` is in bounds.
        let request = unsafe { *array.add(i) };
        if request.is_null() {
            continue;
        }
        // SAFETY: `request` is a non-null element of the array we own; the accessors only read
        // its fields, and the array is freed only after this loop.
        let (broker, api_key, at_micros) = unsafe {
            (
                rdsys::rd_kafka_mock_request_id(request),
                rdsys::rd_kafka_mock_request_api_key(request),
                rdsys::rd_kafka_mock_request_timestamp(request),
            )
        };
        out.push(KafkaRequest {
            broker,
            api_key,
            at_micros,
        });
    }
    // SAFETY: `array` and its `count` requests were allocated by `rd_kafka_mock_get_requests` for
    // us and are freed exactly once here; nothing refers to them afterwards (the values were copied).
    unsafe { rdsys::rd_kafka_mock_request_destroy_array(array, count) };
    Some(out)
}

/// Makes broker `id` of the mock cluster owned by `client` advertise `host:port` in its Metadata
/// and FindCoordinator answers (its listening socket is unchanged). Returns `false` if the client
/// owns no mock cluster or `host` has a NUL byte.
#[cfg(feature = "kafka-tls")]
pub(crate) fn advertise<C: ClientContext>(
    client: &Client<C>,
    id: i32,
    host: &str,
    port: u16,
) -> bool {
    let Some(mcluster) = cluster(client) else {
        return false;
    };
    let Ok(host) = std::ffi::CString::new(host) else {
        return false;
    };
    // SAFETY: `mcluster` is the non-null cluster owned by `client`, alive for the borrow of
    // `client`; the call copies `host` (a valid NUL-terminated string for its duration) into the
    // broker's fixed-size field under the cluster's lock, and ignores an unknown broker id.
    unsafe {
        rdsys::rd_kafka_mock_broker_set_host_port(
            mcluster.as_ptr(),
            id,
            host.as_ptr(),
            i32::from(port),
        )
    };
    true
}
