DROP INDEX work_requests_by_template;
ALTER TABLE work_requests
    DROP CONSTRAINT work_requests_template_release,
    DROP COLUMN template_version,
    DROP COLUMN template_id;
DROP TABLE template_releases;
DROP TABLE templates;
