/* GCS backend: resumable uploads. A PUT of resumable_threshold bytes or more goes up in a
 * session: a POST with the object's metadata (and crc32c) returns the session URI, then
 * chunks of resumable_chunksize with Content-Range; a 308's Range says what the server
 * holds; after a failed chunk a status query asks before resending; a session gone
 * (404/410) or an object that does not match starts over from the first byte. The session
 * URI is a capability: it never appears in messages. */
#include <stdlib.h>
#include <string.h>

#include "backends/gcs/gcs_internal.h"

int gcs_is_resumable(const gcs_backend *g, const cfs_op *op)
{
    /* a body in a file goes in chunks read from it (a single request would hold it whole) */
    return op->kind == CFS_OP_PUT && op->body_len > 0 &&
           (op->body_len >= g->resumable_threshold || op->body_file);
}

/* Does the session URI belong to the endpoint (so it may carry our token)? */
static int session_on_endpoint(const gcs_backend *g, const char *session)
{
    size_t n = strlen(g->endpoint);
    return strncmp(session, g->endpoint, n) == 0 && session[n] == '/';
}

/* The next request of a resumable PUT: start a session (JSON metadata with the whole
 * object's crc32c), send the next chunk from what the server holds, or, when the last
 * request failed and the server may hold part of it, ask what it holds. op->where names
 * the start URL, never the session URI. Sets *may_auth. Returns 0 or -1 (out of memory). */
int gcs_build_resumable(gcs_backend *g, cfs_op *op, gcs_state *st, cfs_request *req,
                        const char *name, size_t name_len, int *may_auth)
{
    *may_auth = 1;
    const char *content_type =
        op->attrs.content_type ? op->attrs.content_type : "application/octet-stream";
    if (st->rs_phase == RS_START) {
        st->rs_in_flight = 0;
        req->method = "POST";
        req->url = cfs_gcs_resumable_url(g->endpoint, g->bucket, name, name_len, op->if_none_match);
        if (!req->url || cfs_op_set_where(op, req->url) < 0 ||
            cfs_gcs_upload_metadata(&req->body_owned, name, name_len, st->crc, &op->attrs) < 0 ||
            cfs_request_header(req, "Content-Type: application/json; charset=UTF-8") < 0 ||
            cfs_request_header(req, "X-Upload-Content-Type: %s", content_type) < 0 ||
            cfs_request_header(req, "X-Upload-Content-Length: %zu", op->body_len) < 0)
            return -1;
        req->body = req->body_owned.data;
        req->body_len = req->body_owned.len;
        return 0;
    }
    if (st->rs_in_flight)
        st->rs_query = 1; /* the last request got no answer: what did the server keep? */
    char range[96];
    req->method = "PUT";
    if (!(req->url = strdup(st->session)))
        return -1;
    *may_auth = session_on_endpoint(g, st->session);
    if (st->rs_query) {
        st->rs_querying = 1;
        req->body = "";
        req->body_len = 0;
        cfs_gcs_content_range(range, sizeof range, 0, 0, op->body_len);
    } else {
        st->rs_querying = 0;
        size_t left = op->body_len - st->rs_offset;
        size_t len = left < g->resumable_chunk ? left : g->resumable_chunk;
        cfs_request_body_of(req, op, st->rs_offset, len);
        st->rs_sent_end = st->rs_offset + len;
        st->rs_chunks++;
        cfs_gcs_content_range(range, sizeof range, st->rs_offset, len, op->body_len);
    }
    if (cfs_request_header(req, "Content-Range: %s", range) < 0 ||
        cfs_request_header(req, "Content-Type: %s", content_type) < 0)
        return -1;
    st->rs_in_flight = 1;
    return 0;
}

/* Start the session over (it is gone, or it made an object that is not ours): from the
 * first byte, with a retry counted. Each chunk gets the full retry budget (cfs_op_next_step), so
 * the restarts have their own: at most max_attempts of them, then the failure stands. */
static cfs_next restart_session(cfs_op *op, gcs_state *st)
{
    if (++st->rs_restarts >= cfs_op_max_attempts(op))
        return CFS_NEXT_DONE;
    free(st->session);
    st->session = NULL;
    st->rs_phase = RS_START;
    st->rs_offset = 0;
    cfs_op_set_bytes_held(op, 0);
    st->rs_query = st->rs_querying = st->rs_in_flight = 0;
    return CFS_NEXT_RETRY;
}

cfs_next gcs_finish_resumable(cfs_op *op, gcs_state *st, const cfs_response *resp)
{
    long code = resp->status;
    st->rs_in_flight = 0;
    if (st->rs_phase == RS_START) {
        if (code >= 200 && code < 300) {
            const char *loc = resp->captured[GCS_LOCATION];
            if (!loc || (strncmp(loc, "http://", 7) != 0 && strncmp(loc, "https://", 8) != 0)) {
                cfs_op_fail(op, CFS_EPROTOCOL, "resumable upload started without a session URI");
                return CFS_NEXT_DONE;
            }
            free(st->session);
            if (!(st->session = strdup(loc))) {
                cfs_op_fail(op, CFS_ENOMEM, "out of memory");
                return CFS_NEXT_DONE;
            }
            st->rs_phase = RS_SEND;
            st->rs_offset = 0;
            st->rs_query = 0;
            return cfs_op_next_step(op, op->step + 1);
        }
        cfs_next next = cfs_http_status_outcome(op, resp);
        gcs_describe_failure(op, resp);
        return next;
    }

    int querying = st->rs_querying;
    st->rs_querying = 0;
    if (code == 308) { /* incomplete: the Range header says how much the server holds */
        int64_t have = 0;
        if (cfs_gcs_parse_upload_range(resp->captured[GCS_RANGE], &have) < 0 ||
            (uint64_t)have > op->body_len) {
            cfs_op_fail(op, CFS_EPROTOCOL, "resumable upload: bad Range in a 308 answer: %.80s",
                        resp->captured[GCS_RANGE] ? resp->captured[GCS_RANGE] : "");
            return CFS_NEXT_DONE;
        }
        size_t before = st->rs_offset;
        st->rs_offset = (size_t)have; /* may be less than sent: resend from there */
        cfs_op_set_bytes_held(op, have);
        st->rs_query = 0;
        if (st->rs_offset > before)
            return cfs_op_next_step(op, op->step + 1); /* progress: the next chunk has every try */
        if (querying) {
            /* after a failed chunk: resend it now (the backoff was before the query). The
             * query is not a try of the chunk: the budget counts the chunk's sends, so a
             * chunk that always fails ends after max_attempts of them. */
            if (op->attempts > 0)
                op->attempts--;
            op->step++;
            return CFS_NEXT_AGAIN;
        }
        /* a chunk the server kept nothing of: try it again, counted */
        cfs_op_fail(op, CFS_ETRANSIENT, "resumable upload: the server kept none of bytes %zu-%zu",
                    before, st->rs_sent_end);
        return CFS_NEXT_RETRY;
    }
    if (code == 200 || code == 201) { /* complete: is it ours? */
        if (!gcs_check_stored(op, st, resp))
            return restart_session(op, st);
        op->status = CFS_OK;
        return CFS_NEXT_DONE;
    }
    cfs_next next = cfs_http_status_outcome(op, resp);
    gcs_describe_failure(op, resp);
    if (code == 404 || code == 410) {
        /* the session expired or was cancelled: start again (counted as a retry) */
        cfs_op_fail(op, CFS_ETRANSIENT, "resumable upload session gone (HTTP %ld)", code);
        return restart_session(op, st);
    }
    if (code == 400 && (strstr(op->message, "CRC32C") || strstr(op->message, "MD5"))) {
        op->status = CFS_ECHECKSUM; /* the whole did not match our crc32c: send it again */
        return restart_session(op, st);
    }
    if (next == CFS_NEXT_RETRY)
        st->rs_query = 1; /* the server may hold part of the chunk: ask before resending */
    return next;
}
