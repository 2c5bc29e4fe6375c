#!/bin/bash
# sandbox_sql.sh - ctx.db reaches only the processor's own tables (issue 5): hostile
# processors that read, change or drop the engine's tables, ATTACH or VACUUM INTO
# another file, run a PRAGMA or load_extension, run a query that never ends, or make
# a blob beyond their memory budget, each beside a control processor on the same
# stream (lib/sandboxlib.sh).
. "$(dirname "$0")/lib/testlib.sh"
. "$(dirname "$0")/lib/sandboxlib.sh"

hostile db_read "ctx.db: table 'sl_events' does not belong to this processor"
hostile db_read_master "ctx.db: table 'sl_checkpoints' does not belong to this processor"
hostile db_drop "ctx.db: table 'sl_checkpoints' does not belong to this processor"
hostile db_delete "ctx.db: table 'sl_events' does not belong to this processor"
hostile db_attach "ctx.db: ATTACH and DETACH are not allowed"
hostile db_pragma "ctx.db: PRAGMA journal_mode is not allowed"
hostile db_loadext "ctx.db: function 'load_extension' is not allowed"
hostile db_vacuum "ctx.db: "
hostile db_long_query "^processor 'hostile' exceeded its wallclock budget$"
hostile db_blob "ctx.db: string or blob too big|exceeded its memory budget"

finish
