-- sqlite3 workload for the mmpool benchmarks. The harness prepends
-- `.parameter set @rows N` and runs: sqlite3 TEMP.db < this file.
-- Output depends only on @rows.
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
PRAGMA cache_size = -65536;
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, name TEXT, body TEXT, v REAL);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < @rows)
INSERT INTO t
SELECT x, (x * 7919) % 1000, printf('name-%08d', (x * 104729) % @rows),
       printf('%.*c', x % 113, 'b') || printf('%x', x * x), (x % 1000) / 7.0
FROM c;
CREATE INDEX t_k ON t(k);
CREATE INDEX t_name ON t(name);
SELECT k, count(*), round(sum(v), 3), max(name) FROM t GROUP BY k ORDER BY k LIMIT 5;
SELECT count(*), sum(length(body)) FROM t WHERE name LIKE 'name-0001%';
UPDATE t SET body = upper(body) || 'x' WHERE id % 3 = 0;
DELETE FROM t WHERE id % 5 = 0;
CREATE TABLE u AS SELECT k, group_concat(id, ',') AS ids FROM t GROUP BY k;
SELECT count(*), sum(length(ids)) FROM u;
SELECT count(*) FROM t JOIN u USING (k) WHERE t.id % 11 = 0;
SELECT name, v FROM t ORDER BY body DESC, name LIMIT 3;
SELECT k % 10 AS g, count(DISTINCT name), max(length(body)) FROM t GROUP BY g ORDER BY g;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < @rows / 2)
INSERT INTO t(k, name, body, v)
SELECT x % 1000, printf('new-%08d', x), printf('%.*c', x % 211, 'n'), x / 3.0 FROM c;
SELECT count(*), round(total(v), 3), sum(length(body)) FROM t;
DROP INDEX t_name;
SELECT name FROM t WHERE k = 7 ORDER BY name LIMIT 3 OFFSET 10;
