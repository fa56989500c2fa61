import './base.css';
import './tracking.css';
import './jobs.css';
import './deployments.css';
import './features.css';
import './labels.css';
import './dashboards.css';
