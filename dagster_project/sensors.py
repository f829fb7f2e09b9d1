"""Notice a new (or re-delivered) survey wave file and refresh everything that depends on it."""

import json

import dagster as dg
from dagster import SensorEvaluationContext

from dagster_project.assets.ingest import raw_key
from dagster_project.resources import Folder
from sicp.contract import SOURCES
from sicp.ingest import IngestError, contract_files, input_fingerprint

SURVEY = SOURCES["survey_wave"]


@dg.sensor(
    name="new_survey_wave",
    target=dg.AssetSelection.assets(raw_key(SURVEY.name)).downstream(),
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Watches the input folder for cohort/survey_wave_NN.sav files; when one "
    "appears, changes or goes, re-ingests the survey and rebuilds what depends on it. "
    "Off until switched on in the UI: it rewrites the warehouse and the results.",
)
def new_survey_wave(context: SensorEvaluationContext, input_folder: Folder):
    """The cursor holds the (file, sha256) set last acted on; the run key is its fingerprint,
    so the same set of files never triggers twice."""
    try:
        files = dict(contract_files(input_folder.dir, [SURVEY]))
    except IngestError as exc:  # e.g. survey_wave_03.csv: say so instead of crashing the tick
        return dg.SkipReason(str(exc))
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    if files == seen:
        return dg.SkipReason("no new, changed or removed survey wave file")
    changed = sorted(path for path, sha in files.items() if seen.get(path) != sha)
    removed = sorted(set(seen) - set(files))
    context.update_cursor(json.dumps(files, sort_keys=True))
    return dg.RunRequest(
        run_key=input_fingerprint(files.items()),
        tags={
            "sicp/survey_files_changed": ",".join(changed) or "-",
            "sicp/survey_files_removed": ",".join(removed) or "-",
        },
    )
