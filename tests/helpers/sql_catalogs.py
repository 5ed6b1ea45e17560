"""Catalog schemas of the Oracle and SQL Server system views our probes query, and a checker.

No Oracle or SQL Server can run here, so every statement the probes send is parsed with
sqlglot in its dialect and its views and columns are resolved against these catalogs. Only the
views and columns the probes use are listed, with the types the vendors document:

- Oracle Database Reference 19c (V$ views: "V$INSTANCE", "V$DATABASE", "V$SESSION", ...;
  static data dictionary views: "DBA_DATA_FILES", "DBA_USERS", ...), checked against 11.2
  where the probe supports 11g.
- Microsoft Learn, SQL Server system catalog views / dynamic management views / msdb tables
  ("sys.databases", "sys.master_files", "sys.dm_os_volume_stats", "backupset", ...).

A misspelled view or column therefore fails `check_statement` (see the tests proving it).
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError
from sqlglot.optimizer.qualify import qualify

Columns = Mapping[str, str]

# ----------------------------------------------------------------------------- Oracle

ORACLE: dict[str, Columns] = {
    "v$instance": {
        "instance_name": "VARCHAR2(16)",
        "host_name": "VARCHAR2(64)",
        "version": "VARCHAR2(17)",
        "status": "VARCHAR2(12)",
        "database_status": "VARCHAR2(17)",
        "startup_time": "DATE",
    },
    "v$database": {
        "name": "VARCHAR2(9)",
        "db_unique_name": "VARCHAR2(30)",
        "open_mode": "VARCHAR2(20)",
        "database_role": "VARCHAR2(16)",
        "log_mode": "VARCHAR2(12)",
    },
    "dba_data_files": {
        "file_name": "VARCHAR2(513)",
        "tablespace_name": "VARCHAR2(30)",
        "bytes": "NUMBER",
        "maxbytes": "NUMBER",
        "autoextensible": "VARCHAR2(3)",
    },
    "dba_temp_files": {
        "file_name": "VARCHAR2(513)",
        "tablespace_name": "VARCHAR2(30)",
        "bytes": "NUMBER",
        "maxbytes": "NUMBER",
        "autoextensible": "VARCHAR2(3)",
    },
    "dba_tablespace_usage_metrics": {
        "tablespace_name": "VARCHAR2(30)",
        "used_space": "NUMBER",
        "tablespace_size": "NUMBER",
        "used_percent": "NUMBER",
    },
    "dba_tablespaces": {"tablespace_name": "VARCHAR2(30)", "block_size": "NUMBER", "contents": "VARCHAR2(9)"},
    "v$resource_limit": {
        "resource_name": "VARCHAR2(30)",
        "current_utilization": "NUMBER",
        "max_utilization": "NUMBER",
        "initial_allocation": "VARCHAR2(10)",
        "limit_value": "VARCHAR2(10)",
    },
    "v$session": {
        "sid": "NUMBER",
        "username": "VARCHAR2(30)",
        "machine": "VARCHAR2(64)",
        "program": "VARCHAR2(48)",
        "event": "VARCHAR2(64)",
        "sql_id": "VARCHAR2(13)",
        "blocking_session": "NUMBER",
        "seconds_in_wait": "NUMBER",
        "status": "VARCHAR2(8)",
        "taddr": "RAW(8)",
    },
    "v$transaction": {
        "addr": "RAW(8)",
        "start_date": "DATE",
        "used_ublk": "NUMBER",
        "status": "VARCHAR2(16)",
    },
    "dba_scheduler_job_run_details": {
        "log_id": "NUMBER",
        "log_date": "TIMESTAMP(6) WITH TIME ZONE",
        "owner": "VARCHAR2(30)",
        "job_name": "VARCHAR2(65)",
        "status": "VARCHAR2(30)",
        "error#": "NUMBER",
        "additional_info": "VARCHAR2(4000)",
    },
    "v$rman_backup_job_details": {
        "session_key": "NUMBER",
        "input_type": "VARCHAR2(13)",
        "status": "VARCHAR2(23)",
        "output_device_type": "VARCHAR2(17)",
        "output_bytes": "NUMBER",
        "start_time": "DATE",
        "end_time": "DATE",
    },
    "v$backup_set_details": {
        "session_key": "NUMBER",
        "backup_type": "VARCHAR2(1)",
        "incremental_level": "NUMBER",
    },
    "v$archived_log": {
        "blocks": "NUMBER",
        "block_size": "NUMBER",
        "completion_time": "DATE",
        "backup_count": "NUMBER",
        "deleted": "VARCHAR2(3)",
        "archived": "VARCHAR2(3)",
        "standby_dest": "VARCHAR2(3)",
    },
    "v$recovery_file_dest": {
        "name": "VARCHAR2(513)",
        "space_limit": "NUMBER",
        "space_used": "NUMBER",
        "space_reclaimable": "NUMBER",
        "number_of_files": "NUMBER",
    },
    "v$archive_dest": {
        "dest_id": "NUMBER",
        "dest_name": "VARCHAR2(256)",
        "status": "VARCHAR2(9)",
        "target": "VARCHAR2(7)",
        "destination": "VARCHAR2(256)",
        "error": "VARCHAR2(256)",
    },
    "v$diag_alert_ext": {
        "originating_timestamp": "TIMESTAMP(9) WITH TIME ZONE",
        "message_text": "VARCHAR2(2048)",
    },
    "dba_objects": {
        "owner": "VARCHAR2(128)",
        "object_name": "VARCHAR2(128)",
        "object_type": "VARCHAR2(23)",
        "status": "VARCHAR2(7)",
    },
    "v$dataguard_stats": {
        "name": "VARCHAR2(32)",
        "value": "VARCHAR2(64)",
        "unit": "VARCHAR2(30)",
        "time_computed": "VARCHAR2(30)",
    },
    "dba_users": {
        "username": "VARCHAR2(128)",
        "account_status": "VARCHAR2(32)",
        "profile": "VARCHAR2(128)",
        "expiry_date": "DATE",
    },
    "v$datafile": {"name": "VARCHAR2(513)"},
    "dual": {"dummy": "VARCHAR2(1)"},
    "v$asm_diskgroup": {
        "name": "VARCHAR2(30)",
        "state": "VARCHAR2(11)",
        "type": "VARCHAR2(6)",
        "total_mb": "NUMBER",
        "free_mb": "NUMBER",
        "usable_file_mb": "NUMBER",
        "offline_disks": "NUMBER",
    },
}

# ----------------------------------------------------------------------------- SQL Server
# Three levels (database.schema.view) because msdb tables are named that way; system
# views are visible from every database and are listed under "master".

MSSQL: dict[str, dict[str, dict[str, Columns]]] = {
    "master": {
        "sys": {
            "databases": {
                "name": "NVARCHAR(128)",
                "database_id": "INT",
                "state": "TINYINT",
                "state_desc": "NVARCHAR(60)",
                "is_read_only": "BIT",
                "user_access_desc": "NVARCHAR(60)",
                "recovery_model_desc": "NVARCHAR(60)",
                "is_in_standby": "BIT",
                "source_database_id": "INT",
                "create_date": "DATETIME",
                "log_reuse_wait_desc": "NVARCHAR(60)",
                "replica_id": "UNIQUEIDENTIFIER",
            },
            "master_files": {
                "database_id": "INT",
                "file_id": "INT",
                "type_desc": "NVARCHAR(60)",
                "name": "NVARCHAR(128)",
                "physical_name": "NVARCHAR(260)",
                "size": "INT",
                "max_size": "INT",
                "growth": "INT",
                "is_percent_growth": "BIT",
                "state_desc": "NVARCHAR(60)",
            },
            "dm_os_sys_info": {"sqlserver_start_time": "DATETIME"},
            "dm_exec_sessions": {
                "session_id": "SMALLINT",
                "is_user_process": "BIT",
                "login_name": "NVARCHAR(128)",
                "host_name": "NVARCHAR(128)",
                "program_name": "NVARCHAR(128)",
                "status": "NVARCHAR(30)",
            },
            "dm_exec_requests": {
                "session_id": "SMALLINT",
                "blocking_session_id": "SMALLINT",
                "wait_type": "NVARCHAR(60)",
                "wait_time": "INT",
                "command": "NVARCHAR(32)",
                "database_id": "SMALLINT",
            },
            "dm_tran_active_transactions": {
                "transaction_id": "BIGINT",
                "name": "NVARCHAR(32)",
                "transaction_begin_time": "DATETIME",
            },
            "dm_tran_session_transactions": {"session_id": "INT", "transaction_id": "BIGINT"},
            "dm_os_performance_counters": {
                "object_name": "NCHAR(128)",
                "counter_name": "NCHAR(128)",
                "instance_name": "NCHAR(128)",
                "cntr_value": "BIGINT",
            },
            "dm_server_services": {
                "servicename": "NVARCHAR(256)",
                "status_desc": "NVARCHAR(256)",
                "startup_type_desc": "NVARCHAR(256)",
            },
            "dm_hadr_availability_replica_states": {
                "replica_id": "UNIQUEIDENTIFIER",
                "group_id": "UNIQUEIDENTIFIER",
                "is_local": "BIT",
                "role_desc": "NVARCHAR(60)",
                "connected_state_desc": "NVARCHAR(60)",
                "synchronization_health_desc": "NVARCHAR(60)",
            },
            "dm_hadr_database_replica_states": {
                "database_id": "INT",
                "replica_id": "UNIQUEIDENTIFIER",
                "is_local": "BIT",
                "synchronization_state_desc": "NVARCHAR(60)",
                "synchronization_health_desc": "NVARCHAR(60)",
                "log_send_queue_size": "BIGINT",
                "redo_queue_size": "BIGINT",
                "is_suspended": "BIT",
                "suspend_reason_desc": "NVARCHAR(60)",
            },
            "availability_replicas": {
                "replica_id": "UNIQUEIDENTIFIER",
                "replica_server_name": "NVARCHAR(256)",
            },
            "availability_groups": {"group_id": "UNIQUEIDENTIFIER", "name": "NVARCHAR(128)"},
            "database_mirroring": {
                "database_id": "INT",
                "mirroring_guid": "UNIQUEIDENTIFIER",
                "mirroring_state_desc": "NVARCHAR(60)",
                "mirroring_role_desc": "NVARCHAR(60)",
                "mirroring_partner_instance": "NVARCHAR(128)",
            },
            "sql_logins": {
                "name": "NVARCHAR(128)",
                "is_disabled": "BIT",
                "is_policy_checked": "BIT",
                "is_expiration_checked": "BIT",
            },
        },
    },
    "msdb": {
        "dbo": {
            "backupset": {
                "database_name": "NVARCHAR(128)",
                "type": "CHAR(1)",
                "is_copy_only": "BIT",
                "backup_start_date": "DATETIME",
                "backup_finish_date": "DATETIME",
                "has_backup_checksums": "BIT",
                "is_damaged": "BIT",
                "media_set_id": "INT",
                "backup_size": "NUMERIC(20, 0)",
                "server_name": "NVARCHAR(128)",
            },
            "backupmediafamily": {
                "media_set_id": "INT",
                "physical_device_name": "NVARCHAR(260)",
                "device_type": "TINYINT",
            },
            "suspect_pages": {
                "database_id": "INT",
                "file_id": "INT",
                "page_id": "BIGINT",
                "event_type": "INT",
                "error_count": "INT",
                "last_update_date": "DATETIME",
            },
            "sysjobs": {"job_id": "UNIQUEIDENTIFIER", "name": "NVARCHAR(128)", "enabled": "TINYINT"},
            "sysjobhistory": {
                "instance_id": "INT",
                "job_id": "UNIQUEIDENTIFIER",
                "step_id": "INT",
                "message": "NVARCHAR(4000)",
                "run_status": "INT",
                "run_date": "INT",
                "run_time": "INT",
            },
            "log_shipping_monitor_secondary": {
                "secondary_server": "NVARCHAR(128)",
                "secondary_database": "NVARCHAR(128)",
                "primary_server": "NVARCHAR(128)",
                "primary_database": "NVARCHAR(128)",
                "last_copied_date": "DATETIME",
                "last_restored_date": "DATETIME",
                "restore_threshold": "INT",
            },
        },
    },
}

MSSQL_TVFS: dict[str, Columns] = {
    "sys.dm_os_volume_stats": {
        "volume_mount_point": "NVARCHAR(512)",
        "total_bytes": "BIGINT",
        "available_bytes": "BIGINT",
        "logical_volume_name": "NVARCHAR(512)",
    },
}
"""Table-valued functions used with CROSS APPLY: their result columns."""


# ----------------------------------------------------------------------------- checker


class CatalogError(AssertionError):
    """A statement names a view or column the catalog does not have, or is not read-only."""


_WRITES = (
    exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter, exp.Command,
    exp.Into, exp.Lock, exp.TruncateTable,
)  # fmt: skip


def _flat_names(catalog: Mapping[str, object], depth: int) -> set[str]:
    if depth == 1:
        return {k.lower() for k in catalog}
    names = set()
    for key, sub in catalog.items():
        assert isinstance(sub, Mapping)
        names |= {f"{key}.{n}".lower() for n in _flat_names(sub, depth - 1)}
    return names


def check_statement(
    sql: str,
    dialect: str,
    catalog: Mapping[str, object],
    *,
    depth: int = 1,
    default_catalog: str | None = None,
    tvfs: Mapping[str, Columns] | None = None,
) -> exp.Expression:
    """Parse, assert read-only, resolve every view and column; raises CatalogError."""
    statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    if len(statements) != 1:
        raise CatalogError(f"expected one statement, got {len(statements)}")
    tree = statements[0]
    if not isinstance(tree, exp.Select | exp.SetOperation):
        raise CatalogError(f"not a SELECT: {type(tree).__name__}")
    for node in tree.walk():
        if isinstance(node, _WRITES):
            raise CatalogError(f"not read-only: {type(node).__name__}")
    known = _flat_names(catalog, depth)
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        parts = [p for p in (table.catalog, table.db, table.name) if p]
        if len(parts) == 1 and parts[0].lower() in ctes:
            continue
        if depth == 3 and len(parts) == 2 and default_catalog:
            parts = [default_catalog, *parts]
        name = ".".join(parts).lower()
        if name not in known:
            raise CatalogError(f"unknown view or table {name}")
    _check_tvfs(tree, tvfs or {})
    try:
        return qualify(
            tree.copy(),
            schema=catalog,
            dialect=dialect,
            catalog=default_catalog,
            validate_qualify_columns=True,
            quote_identifiers=False,
        )
    except OptimizeError as exc:
        raise CatalogError(str(exc)) from exc


def _check_tvfs(tree: exp.Expression, tvfs: Mapping[str, Columns]) -> None:
    """CROSS APPLY functions: the function must be known and every alias.column it yields too.
    (qualify cannot see inside a table-valued function, so this is checked here.)"""
    for lateral in tree.find_all(exp.Lateral):
        call = lateral.this
        name = call.sql("tsql").split("(")[0].lower()
        if name not in tvfs:
            raise CatalogError(f"unknown table-valued function {name}")
        alias = lateral.alias.lower()
        columns = {c.lower() for c in tvfs[name]}
        for col in tree.find_all(exp.Column):
            if col.table.lower() == alias and col.name.lower() not in columns:
                raise CatalogError(f"unknown column {alias}.{col.name} of {name}")
