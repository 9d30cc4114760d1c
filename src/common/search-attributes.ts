/**
 * Custom search attributes, registered by the dev-server script and the test environment, set on every
 * onboarding so the Web UI can filter by server, site, rack, hypervisor, current step and outcome — and on every
 * drift check (`drift-<id>`) with its status, the steps found drifted and when the host was last observed.
 * Values are identifiers only — never secrets (search attributes are not encrypted by payload codecs).
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const SA_SERVER_ID = defineSearchAttributeKey('UnderlayServerId', SearchAttributeType.KEYWORD);
export const SA_SITE = defineSearchAttributeKey('UnderlaySite', SearchAttributeType.KEYWORD);
export const SA_RACK = defineSearchAttributeKey('UnderlayRack', SearchAttributeType.KEYWORD);
export const SA_HYPERVISOR = defineSearchAttributeKey('UnderlayHypervisor', SearchAttributeType.KEYWORD);
export const SA_STEP = defineSearchAttributeKey('UnderlayStep', SearchAttributeType.KEYWORD);
export const SA_OUTCOME = defineSearchAttributeKey('UnderlayOutcome', SearchAttributeType.KEYWORD);
/** clean | drifted | remediated | failed | awaiting-approval | skipped */
export const SA_DRIFT_STATUS = defineSearchAttributeKey('UnderlayDriftStatus', SearchAttributeType.KEYWORD);
/** Steps whose live state differed from the spec at the last check, e.g. ["vlan", "sriov"]. */
export const SA_DRIFTED_STEPS = defineSearchAttributeKey('UnderlayDriftedSteps', SearchAttributeType.KEYWORD_LIST);
/** When the drift check last observed the host. */
export const SA_LAST_CHECKED = defineSearchAttributeKey('UnderlayLastChecked', SearchAttributeType.DATETIME);

export const SEARCH_ATTRIBUTES = [SA_SERVER_ID, SA_SITE, SA_RACK, SA_HYPERVISOR, SA_STEP, SA_OUTCOME, SA_DRIFT_STATUS, SA_DRIFTED_STEPS, SA_LAST_CHECKED];

/** `--search-attribute Name=Type` flags for `temporal server start-dev`. */
export function devServerSearchAttributeFlags(): string[] {
  const typeName: Record<string, string> = {
    KEYWORD: 'Keyword',
    TEXT: 'Text',
    INT: 'Int',
    DOUBLE: 'Double',
    BOOL: 'Bool',
    DATETIME: 'Datetime',
    KEYWORD_LIST: 'KeywordList',
  };
  return SEARCH_ATTRIBUTES.flatMap((k) => ['--search-attribute', `${k.name}=${typeName[k.type] ?? k.type}`]);
}
