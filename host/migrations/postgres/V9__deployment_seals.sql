-- The seal of `[deployments] signing_key` on each shared deployed version (hex HMAC-SHA256 of the
-- tenant and the content hash): replicas with the key run only sealed versions. NULL for versions
-- deployed without a key, and for every version deployed before this migration. Releases before
-- it neither write nor read the column. Idempotent, as V8 is: a database rebuilt from an older
-- release's history applies it again.
ALTER TABLE deployment_versions ADD COLUMN IF NOT EXISTS seal TEXT;
