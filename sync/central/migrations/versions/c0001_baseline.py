"""The station's schema as it stood when it got migrations (made by ``create_all`` before).

Revision ID: c0001
Revises:
Create Date: 2026-12-05 01:39:11.866376
"""

import sqlalchemy as sa
from alembic import op

import app.persistence.types

revision = "c0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "central_audit_heads",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("counter_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("at", app.persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("previous_seq", sa.BigInteger(), nullable=True),
        sa.Column("at_previous_seq", sa.String(length=64), nullable=True),
        sa.Column("received_at", app.persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_audit_heads")),
        sa.UniqueConstraint("counter_id", "seq", name="uq_central_audit_heads_counter_seq"),
    )
    op.create_table(
        "central_control_status",
        sa.Column("customer_no", sa.String(length=12), nullable=False),
        sa.Column("meter_remaining", sa.BigInteger(), nullable=False),
        sa.Column("meter_purchase_count", sa.BigInteger(), nullable=False),
        sa.Column(
            "last_report_at", app.persistence.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("customer_no", name=op.f("pk_central_control_status")),
    )
    op.create_table(
        "central_counters",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("office_code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("receipt_key", sa.String(length=64), nullable=False),
        sa.Column(
            "registered_at", app.persistence.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_counters")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_central_counters_token_hash")),
    )
    op.create_table(
        "central_customers",
        sa.Column("customer_no", sa.String(length=12), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=200), nullable=False),
        sa.Column("phone", sa.String(length=24), nullable=False),
        sa.Column("meter_no", sa.String(length=12), nullable=False),
        sa.Column("meter_kind", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("office_code", sa.String(length=32), nullable=False),
        sa.Column("tariff_plan", sa.String(length=32), nullable=False),
        sa.Column("ct_ratio", sa.Integer(), nullable=False),
        sa.Column("pt_ratio", sa.Integer(), nullable=False),
        sa.Column("alarm1", sa.BigInteger(), nullable=False),
        sa.Column("alarm2", sa.BigInteger(), nullable=False),
        sa.Column("overdraft_limit", sa.BigInteger(), nullable=False),
        sa.Column("credit_ceiling", sa.BigInteger(), nullable=False),
        sa.Column("card_serial", sa.String(length=32), nullable=True),
        sa.Column("purchase_count", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("customer_no", name=op.f("pk_central_customers")),
        sa.UniqueConstraint("seq", name=op.f("uq_central_customers_seq")),
    )
    with op.batch_alter_table("central_customers", schema=None) as batch_op:
        batch_op.create_index(
            "ix_central_customers_office_seq", ["office_code", "seq"], unique=False
        )

    op.create_table(
        "central_enrolment_codes",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("counter_id", sa.String(length=32), nullable=False),
        sa.Column("office_code", sa.String(length=32), nullable=False),
        sa.Column("issued_at", app.persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", app.persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", app.persistence.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_central_enrolment_codes")),
    )
    with op.batch_alter_table("central_enrolment_codes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_central_enrolment_codes_counter_id"), ["counter_id"], unique=False
        )

    op.create_table(
        "central_enrolments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("counter_id", sa.String(length=32), nullable=False),
        sa.Column("office_code", sa.String(length=32), nullable=False),
        sa.Column("how", sa.String(length=12), nullable=False),
        sa.Column("request_key_hash", sa.String(length=64), nullable=True),
        sa.Column("at", app.persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_enrolments")),
    )
    with op.batch_alter_table("central_enrolments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_central_enrolments_counter_id"), ["counter_id"], unique=False
        )

    op.create_table(
        "central_events",
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("subject", sa.String(length=36), nullable=False),
        sa.Column("counter_id", sa.String(length=32), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("body_hash", sa.String(length=64), nullable=False),
        sa.Column("received_at", app.persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "id", name="pk_central_events"),
    )
    with op.batch_alter_table("central_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_central_events_subject"), ["subject"], unique=False)

    op.create_table(
        "central_idempotency_keys",
        sa.Column("counter_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("created_at", app.persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("counter_id", "key", name="pk_central_idempotency_keys"),
    )
    op.create_table(
        "central_jobs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("customer_no", sa.String(length=12), nullable=False),
        sa.Column("meter_no", sa.String(length=12), nullable=False),
        sa.Column("office_code", sa.String(length=32), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("created_at", app.persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_jobs")),
        sa.UniqueConstraint("seq", name=op.f("uq_central_jobs_seq")),
    )
    with op.batch_alter_table("central_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_central_jobs_office_seq", ["office_code", "seq"], unique=False)

    op.create_table(
        "central_refusals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("counter_id", sa.String(length=32), nullable=False),
        sa.Column("resource", sa.String(length=32), nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("message", sa.String(length=300), nullable=False),
        sa.Column("at", app.persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_refusals")),
    )
    with op.batch_alter_table("central_refusals", schema=None) as batch_op:
        batch_op.create_index("ix_central_refusals_counter_at", ["counter_id", "at"], unique=False)

    op.create_table(
        "central_retired_audit_heads",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("counter_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("at", app.persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("received_at", app.persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("retired_at", app.persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_retired_audit_heads")),
    )
    with op.batch_alter_table("central_retired_audit_heads", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_central_retired_audit_heads_counter_id"), ["counter_id"], unique=False
        )

    op.create_table(
        "central_retired_receipt_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("counter_id", sa.String(length=32), nullable=False),
        sa.Column("receipt_key", sa.String(length=64), nullable=False),
        sa.Column("retired_at", app.persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_retired_receipt_keys")),
    )
    with op.batch_alter_table("central_retired_receipt_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_central_retired_receipt_keys_counter_id"), ["counter_id"], unique=False
        )

    op.create_table(
        "central_sales",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("counter_id", sa.String(length=32), nullable=False),
        sa.Column("customer_no", sa.String(length=12), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("credit", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("body_hash", sa.String(length=64), nullable=False),
        sa.Column("received_at", app.persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("review", sa.String(length=40), nullable=True),
        sa.Column("reversed", sa.Boolean(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_sales")),
        sa.UniqueConstraint("seq", name=op.f("uq_central_sales_seq")),
    )
    with op.batch_alter_table("central_sales", schema=None) as batch_op:
        batch_op.create_index("ix_central_sales_counter_seq", ["counter_id", "seq"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_central_sales_customer_no"), ["customer_no"], unique=False
        )

    op.create_table(
        "central_streams",
        sa.Column("name", sa.String(length=16), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_central_streams")),
    )
    op.create_table(
        "central_tariff_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("plan_code", sa.String(length=32), nullable=False),
        sa.Column("plan_name", sa.String(length=64), nullable=False),
        sa.Column("version_no", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column(
            "effective_from", app.persistence.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_tariff_versions")),
        sa.UniqueConstraint(
            "plan_code", "version_no", name="uq_central_tariff_versions_plan_version"
        ),
        sa.UniqueConstraint("seq", name=op.f("uq_central_tariff_versions_seq")),
    )
    op.create_table(
        "central_arrears_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ref", sa.String(length=40), nullable=False),
        sa.Column("customer_no", sa.String(length=12), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("description", sa.String(length=120), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("must_collect", sa.Boolean(), nullable=False),
        sa.Column("settled_by_sale", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_no"],
            ["central_customers.customer_no"],
            name=op.f("fk_central_arrears_items_customer_no_central_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_arrears_items")),
        sa.UniqueConstraint("ref", name=op.f("uq_central_arrears_items_ref")),
    )
    with op.batch_alter_table("central_arrears_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_central_arrears_items_customer_no"), ["customer_no"], unique=False
        )

    op.create_table(
        "central_remote_status",
        sa.Column("sale_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["sale_id"],
            ["central_sales.id"],
            name=op.f("fk_central_remote_status_sale_id_central_sales"),
        ),
        sa.PrimaryKeyConstraint("sale_id", name=op.f("pk_central_remote_status")),
        sa.UniqueConstraint("seq", name=op.f("uq_central_remote_status_seq")),
    )


def downgrade() -> None:
    op.drop_table("central_remote_status")
    with op.batch_alter_table("central_arrears_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_central_arrears_items_customer_no"))

    op.drop_table("central_arrears_items")
    op.drop_table("central_tariff_versions")
    op.drop_table("central_streams")
    with op.batch_alter_table("central_sales", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_central_sales_customer_no"))
        batch_op.drop_index("ix_central_sales_counter_seq")

    op.drop_table("central_sales")
    with op.batch_alter_table("central_retired_receipt_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_central_retired_receipt_keys_counter_id"))

    op.drop_table("central_retired_receipt_keys")
    with op.batch_alter_table("central_retired_audit_heads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_central_retired_audit_heads_counter_id"))

    op.drop_table("central_retired_audit_heads")
    with op.batch_alter_table("central_refusals", schema=None) as batch_op:
        batch_op.drop_index("ix_central_refusals_counter_at")

    op.drop_table("central_refusals")
    with op.batch_alter_table("central_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_central_jobs_office_seq")

    op.drop_table("central_jobs")
    op.drop_table("central_idempotency_keys")
    with op.batch_alter_table("central_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_central_events_subject"))

    op.drop_table("central_events")
    with op.batch_alter_table("central_enrolments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_central_enrolments_counter_id"))

    op.drop_table("central_enrolments")
    with op.batch_alter_table("central_enrolment_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_central_enrolment_codes_counter_id"))

    op.drop_table("central_enrolment_codes")
    with op.batch_alter_table("central_customers", schema=None) as batch_op:
        batch_op.drop_index("ix_central_customers_office_seq")

    op.drop_table("central_customers")
    op.drop_table("central_counters")
    op.drop_table("central_control_status")
    op.drop_table("central_audit_heads")
