-- database.optimize: what it reads about tables and indexes. The statements it runs (ANALYZE,
-- REINDEX INDEX CONCURRENTLY, DROP INDEX CONCURRENTLY) name objects found here and are built
-- with quoted identifiers in storage/optimization.py.

-- name: optimization_table_bloat --
-- Dead and live tuples of the maintained tables (pg_stat_user_tables), with sizes.
SELECT s.schemaname || '.' || s.relname AS table_name, s.n_live_tup AS live_tuples, s.n_dead_tup AS dead_tuples,
       round(s.n_dead_tup::numeric / nullif(s.n_live_tup + s.n_dead_tup, 0), 3)::double precision AS dead_ratio,
       pg_total_relation_size(s.relid) AS total_bytes, s.last_autovacuum, s.last_autoanalyze
FROM pg_stat_user_tables s
WHERE s.schemaname || '.' || s.relname = ANY(%(tables)s)
   OR s.relid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent::regclass::text = ANY(%(tables)s))
ORDER BY s.n_dead_tup DESC, table_name;

-- name: optimization_index_estimates --
-- Valid b-tree indexes of the maintained tables (and their partitions) with a bloat estimate
-- from the catalog: the size their entries need (key widths from pg_stats, 12 bytes of
-- overhead each, 90%% leaf fill) against the size they have. pgstattuple, when installed,
-- gives a measured figure instead (optimization_index_density).
SELECT ci.oid AS index_oid, quote_ident(ni.nspname) || '.' || quote_ident(ci.relname) AS index_name,
       ct.relname AS table_name, pg_relation_size(ci.oid) AS index_bytes,
       greatest(0, 1 - (ci.reltuples::double precision
                        * (12 + coalesce((SELECT sum(coalesce(st.avg_width, 8))
                                          FROM unnest(i.indkey) AS k(attnum)
                                          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                                          LEFT JOIN pg_stats st ON st.schemaname = nt.nspname
                                               AND st.tablename = ct.relname AND st.attname = a.attname), 8))
                        / 0.9 + 8192)
                       / greatest(pg_relation_size(ci.oid), 8192)::double precision) AS estimated_bloat
FROM pg_index i
JOIN pg_class ci ON ci.oid = i.indexrelid
JOIN pg_namespace ni ON ni.oid = ci.relnamespace
JOIN pg_class ct ON ct.oid = i.indrelid
JOIN pg_namespace nt ON nt.oid = ct.relnamespace
JOIN pg_am am ON am.oid = ci.relam
WHERE i.indisvalid AND ci.relkind = 'i' AND am.amname = 'btree'
  AND (nt.nspname || '.' || ct.relname = ANY(%(tables)s)
       OR ct.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent::regclass::text = ANY(%(tables)s)))
ORDER BY index_name;

-- name: optimization_pgstattuple_schema --
-- The schema of this database's pgstattuple extension (its pgstatindex measures an index's leaf
-- density); no row when it is not installed. The call itself is built in storage/optimization.py,
-- since it cannot be prepared where the extension is missing.
SELECT n.nspname AS schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'pgstattuple';

-- name: optimization_invalid_leftovers --
-- Invalid indexes a failed REINDEX CONCURRENTLY left behind (<name>_ccnew, _ccold, numbered
-- when there are several) in Lamplighter's schemas.
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS index_name
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT i.indisvalid AND c.relname ~ '_cc(new|old)[0-9]*$' AND n.nspname IN ('lamplighter', 'dramatiq')
ORDER BY index_name;
