// Reads a JSON array of simulations (the shape @cloud-copilot/iam-simulate's runSimulation takes) on
// stdin and prints, for each, AWS's decision and the statements that decided it, as one JSON array.
// tests/iam/simulator.py runs it; one process evaluates a whole batch.
import { runSimulation } from '@cloud-copilot/iam-simulate'

const chunks = []
for await (const chunk of process.stdin) chunks.push(chunk)
const simulations = JSON.parse(Buffer.concat(chunks).toString('utf8'))

// A decisive statement as the report shows it: its policy, and its Sid or its actions and resources.
const decisive = (statements) =>
  (statements || []).map((s) => {
    const statement = JSON.parse(JSON.stringify(s.statement ?? {})) // the library's object, as plain JSON
    return {
      policy: s.policyId ?? 'resource policy',
      sid: statement.Sid,
      action: statement.Action ?? statement.NotAction,
      resource: statement.Resource ?? statement.NotResource,
    }
  })

const results = []
for (const simulation of simulations) {
  const response = await runSimulation(simulation, {})
  if (response.resultType === 'error') {
    results.push({ decision: 'Error', errors: response.errors })
    continue
  }
  const analysis = response.resultType === 'single' ? response.result.analysis : undefined
  results.push({
    decision: response.overallResult,
    identityAllows: decisive(analysis?.identityAnalysis?.allowStatements),
    resourceAllows: decisive(analysis?.resourceAnalysis?.allowStatements),
    denies: decisive([
      ...(analysis?.identityAnalysis?.denyStatements || []),
      ...(analysis?.resourceAnalysis?.denyStatements || []),
    ]),
  })
}
process.stdout.write(JSON.stringify(results))
