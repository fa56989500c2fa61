import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { element } from '../dom';
import { HimaliaClient, IDeployed } from '../handler';

/**
 * What the platform accepts as a deployment's name: a DNS label.
 */
export const DEPLOYMENT_NAME = /^[a-z][a-z0-9-]{0,62}$/;

/**
 * The run whose model is deployed: MLflow's `runs:/<run_id>/model`.
 */
export interface IRunToDeploy {
  runId: string;
  runName: string;
}

/**
 * What the Deploy dialog asks for.
 */
export interface IDeployChoice {
  name: string;
  /** The new version's share of traffic; 0 gives it all once it is healthy. */
  canaryPercent: number;
}

/**
 * The model URI of a run's model, as `%train` and `mlflow.*.log_model(name="model")` log it.
 */
export function runModelUri(runId: string): string {
  return `runs:/${runId}/model`;
}

/**
 * A deployment name made from a run's name: lowercase, other characters as `-`, starting with a
 * letter (`Baseline v2` -> `baseline-v2`).
 */
export function suggestName(runName: string): string {
  const name = runName
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^[^a-z]+/, '')
    .replace(/-+$/, '')
    .slice(0, 63)
    .replace(/-+$/, '');
  return name || 'model';
}

/**
 * What is wrong with a choice, naming the field; empty when nothing is.
 */
export function checkChoice(choice: IDeployChoice): string {
  if (!DEPLOYMENT_NAME.test(choice.name)) {
    return (
      'Deployment name: a lowercase letter, then lowercase letters, digits and “-” ' +
      '(63 at most).'
    );
  }
  const canary = choice.canaryPercent;
  if (!Number.isInteger(canary) || canary < 0 || canary > 99) {
    return 'Canary %: a whole number from 0 to 99.';
  }
  return '';
}

/**
 * The Deploy dialog's form: the deployment's name and the canary's share.
 */
class DeployForm extends Widget {
  constructor(run: IRunToDeploy, choice: IDeployChoice, problem: string) {
    super();
    this.addClass('jp-himalia-deploy-form');
    const model = element('p', 'jp-himalia-deploy-model');
    model.append('Model: ', element('code', '', runModelUri(run.runId)));

    this._name = element('input', 'jp-mod-styled');
    this._name.value = choice.name;
    this._name.required = true;
    this._name.spellcheck = false;
    this._name.pattern = DEPLOYMENT_NAME.source;
    const name = field(
      'Deployment name',
      this._name,
      'A new name makes a deployment; the name of one of yours adds a version to it.'
    );

    this._canary = element('input', 'jp-mod-styled');
    this._canary.type = 'number';
    this._canary.min = '0';
    this._canary.max = '99';
    this._canary.step = '1';
    this._canary.value = String(choice.canaryPercent);
    const canary = field(
      'Canary %',
      this._canary,
      '0: the new version takes all the traffic once it is healthy. 1–99: it takes that ' +
        'share, the current version the rest, until you promote or roll back.'
    );

    const error = element('p', 'jp-himalia-deploy-error', problem);
    error.setAttribute('role', 'alert');
    error.hidden = problem === '';
    this.node.append(model, name, canary, error);
  }

  getValue(): IDeployChoice {
    return {
      name: this._name.value.trim(),
      canaryPercent: this._canary.value === '' ? 0 : Number(this._canary.value)
    };
  }

  private _name: HTMLInputElement;
  private _canary: HTMLInputElement;
}

function field(label: string, input: HTMLInputElement, help: string): HTMLElement {
  const node = element('label', 'jp-himalia-deploy-field');
  node.append(
    element('span', 'jp-himalia-deploy-label', label),
    input,
    element('span', 'jp-himalia-deploy-help', help)
  );
  return node;
}

/**
 * Ask for a deployment's name and canary share, then deploy the run's model. A choice that is
 * not valid, or that the platform refuses, brings the form back with the reason.
 *
 * @returns what was deployed, or null when the user cancelled.
 */
export async function deployRun(
  client: HimaliaClient,
  run: IRunToDeploy
): Promise<IDeployed | null> {
  let choice: IDeployChoice = { name: suggestName(run.runName), canaryPercent: 0 };
  let problem = '';
  for (;;) {
    const answer = await showDialog<IDeployChoice>({
      title: `Deploy the model of “${run.runName}”`,
      body: new DeployForm(run, choice, problem),
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Deploy' })],
      focusNodeSelector: 'input'
    });
    if (!answer.button.accept || answer.value === null) {
      return null;
    }
    choice = answer.value;
    problem = checkChoice(choice);
    if (problem) {
      continue;
    }
    try {
      return await client.deploy({
        name: choice.name,
        model_uri: runModelUri(run.runId),
        canary_percent: choice.canaryPercent
      });
    } catch (error) {
      problem = (error as Error).message;
    }
  }
}
