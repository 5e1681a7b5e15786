// An experiment's name, owner, description and status; writers edit the last two.
import { useState } from 'react';
import { type Experiment, type ExperimentStatus, updateExperiment } from '../api';
import { formatTime } from '../lib/format';
import { Link, paths } from '../lib/router';
import { ErrorBox, StatusBadge } from './common';

export function ExperimentHeader({ experiment, writable, onChanged }: {
  experiment: Experiment;
  writable: boolean;
  onChanged: () => void;
}) {
  const [editing, setEditing] = useState(false);
  const [description, setDescription] = useState(experiment.description);
  const [error, setError] = useState<unknown>(null);

  const patch = async (body: { description?: string; status?: ExperimentStatus }) => {
    setError(null);
    try {
      await updateExperiment(experiment.experiment_id, body);
      setEditing(false);
      onChanged();
    } catch (err) {
      setError(err);
    }
  };

  return (
    <div className="page-head experiment-head">
      <div>
        <div className="breadcrumbs">
          <Link to={paths.experiments()}>Experiments</Link> /
        </div>
        <h1>
          {experiment.name} <StatusBadge status={experiment.status} />
        </h1>
        <div className="muted">
          {experiment.owner ? `owner ${experiment.owner} · ` : ''}created {formatTime(experiment.created_at)}
        </div>
        {editing ? (
          <div className="edit-description">
            <textarea value={description} rows={3} onChange={(e) => setDescription(e.target.value)} />
            <button type="button" className="primary" onClick={() => void patch({ description })}>
              Save
            </button>
            <button type="button" onClick={() => setEditing(false)}>
              Cancel
            </button>
          </div>
        ) : (
          <p className="description">
            {experiment.description || <span className="muted">no description</span>}
            {writable ? (
              <button
                type="button"
                className="link-button"
                onClick={() => {
                  setDescription(experiment.description);
                  setEditing(true);
                }}
              >
                edit
              </button>
            ) : null}
          </p>
        )}
        <ErrorBox error={error} />
      </div>
      {writable ? (
        <label className="status-select">
          Status
          <select
            value={experiment.status}
            onChange={(e) => void patch({ status: e.target.value as ExperimentStatus })}
          >
            <option value="created">created</option>
            <option value="active">active</option>
            <option value="archived">archived</option>
          </select>
        </label>
      ) : null}
    </div>
  );
}
