-- Adapter versions deployed over HTTP, shared by every replica: per tenant, which version is
-- active (NULL: the tenant's configured file) and the kept versions with their components. A
-- deploy or rollback is one transaction that also bumps `deployment_generation`, whose row lock
-- orders those transactions, so `SELECT max(changed) FROM deployment_tenants` grows in commit
-- order and a replica polling it sees every change.

CREATE TABLE deployment_generation (
    id BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    value BIGINT NOT NULL
);
INSERT INTO deployment_generation (value) VALUES (0);

CREATE TABLE deployment_tenants (
    tenant TEXT PRIMARY KEY,
    -- Content hash of the active version; NULL: the configured adapter file.
    active TEXT,
    -- `[deployments] keep` of the replica that made the last change.
    keep INTEGER NOT NULL,
    -- The generation of the last change.
    changed BIGINT NOT NULL
);

CREATE TABLE deployment_versions (
    tenant TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    -- RFC 3339, as the deploying replica's clock read it.
    deployed_at TEXT NOT NULL,
    -- The generation it was (last) deployed at: newest first is highest first.
    deployed BIGINT NOT NULL,
    component BYTEA NOT NULL,
    PRIMARY KEY (tenant, content_hash)
);
