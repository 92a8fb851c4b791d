-- Canary deployments: the version serving a share of a tenant's tickets beside the active one
-- and how the last canary ended (JSON of `CanaryVersion` and `CanaryOutcome`; NULL: none), and
-- each replica's count of a canary's calls on both sides, summed for the one decision taken on
-- it. Nullable columns and a new table: the release before this one neither reads nor writes them.
ALTER TABLE deployment_tenants ADD COLUMN IF NOT EXISTS canary TEXT;
ALTER TABLE deployment_tenants ADD COLUMN IF NOT EXISTS last_canary TEXT;

CREATE TABLE IF NOT EXISTS deployment_canary_figures (
    tenant TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    replica TEXT NOT NULL,
    -- JSON of `CanaryFigures`: this replica's calls since the canary started.
    figures TEXT NOT NULL,
    PRIMARY KEY (tenant, content_hash, replica)
);
