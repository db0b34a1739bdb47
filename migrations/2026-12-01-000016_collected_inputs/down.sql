DELETE FROM work_request_inputs WHERE artifact_id IS NULL AND from_work_request_id IS NULL;
ALTER TABLE work_request_inputs ADD CONSTRAINT work_request_inputs_check
    CHECK (artifact_id IS NOT NULL OR from_work_request_id IS NOT NULL);
ALTER TABLE work_request_inputs DROP CONSTRAINT work_request_inputs_artifact_id_fkey;
ALTER TABLE work_request_inputs ADD CONSTRAINT work_request_inputs_artifact_id_fkey
    FOREIGN KEY (artifact_id) REFERENCES artifacts (id);
