-- The collector deletes artifacts that are no longer alive. An artifact stays alive while
-- it is the input of an unfinished request; once the request has finished, its input rows
-- must not hold the artifact for ever. They let go of it (artifact_id NULL) and keep the
-- mount, so the request still says what it took. An input with neither an artifact nor a
-- step to take it from is therefore one whose artifact was collected after its request
-- finished.
ALTER TABLE work_request_inputs DROP CONSTRAINT work_request_inputs_artifact_id_fkey;
ALTER TABLE work_request_inputs ADD CONSTRAINT work_request_inputs_artifact_id_fkey
    FOREIGN KEY (artifact_id) REFERENCES artifacts (id) ON DELETE SET NULL;
ALTER TABLE work_request_inputs DROP CONSTRAINT work_request_inputs_check;
