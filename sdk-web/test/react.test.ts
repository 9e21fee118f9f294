// The React binding: hooks read through the provider and re-render on a change of their flag.

import assert from 'node:assert/strict'
import { afterEach, test } from 'node:test'
import { act, createElement } from 'react'
import TestRenderer from 'react-test-renderer'
import { useFlag, useVariationDetail, useVexilClient, VexilProvider } from '../src/react.js'
import { ALICE, changes, closeAll, FakeServer, KEY, result, settle, TestClient, values } from './helpers.js'

afterEach(closeAll)
;(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true

test('useFlag and useVariationDetail follow their flag; other flags do not re-render them', async () => {
  const server = new FakeServer()
  const client = new TestClient(KEY, { fetch: server.fetch, context: ALICE, storage: null, logger: null, bootstrap: { banner: 'spring' } })
  const renders = { banner: 0, limit: 0 }
  function Banner() {
    renders.banner++
    const text = useFlag('banner', 'none')
    const layout = useFlag('layout', { columns: 1 })
    return createElement('p', null, `${text}:${JSON.stringify(layout)}`)
  }
  function Limit() {
    renders.limit++
    const detail = useVariationDetail('limit', 0)
    return createElement('b', null, `${detail.value}/${detail.reason.kind}/${detail.source}`)
  }
  let root: TestRenderer.ReactTestRenderer | undefined
  await act(async () => {
    root = TestRenderer.create(createElement(VexilProvider, { client }, createElement(Banner), createElement(Limit)))
  })
  const text = (): string => JSON.stringify(root?.toJSON())
  assert.match(text(), /spring:\{\\"columns\\":1\}/)
  assert.match(text(), /0\/ERROR\/BOOTSTRAP/)

  await act(async () => {
    ;(await server.watchCount(1)).send(values(2, result('banner', 'summer', { variation: 1 }), result('limit', 5, { variation: 0 })))
    await settle()
  })
  assert.match(text(), /summer/)
  assert.match(text(), /5\/FALLTHROUGH\/NETWORK/)
  const before = { ...renders }

  await act(async () => {
    server.last.send(changes(3, [result('limit', 6, { variation: 1, reason: 'TARGET_MATCH' })]))
    await settle()
  })
  assert.match(text(), /6\/TARGET_MATCH\/NETWORK/)
  assert.equal(renders.limit, before.limit + 1)
  assert.equal(renders.banner, before.banner, 'a change of limit does not render Banner')
  await act(async () => root?.unmount())
  assert.equal(client.listenerCount('change:banner'), 0, 'unmounting unsubscribes')
})

test('a hook without a provider throws a coded error', async () => {
  function Orphan() {
    useVexilClient()
    return null
  }
  const errors: unknown[] = []
  const original = console.error
  console.error = () => {}
  try {
    await act(async () => {
      try {
        TestRenderer.create(createElement(Orphan))
      } catch (err) {
        errors.push(err)
      }
    })
  } catch (err) {
    errors.push(err)
  } finally {
    console.error = original
  }
  assert.equal((errors[0] as { code?: string }).code, 'VEXIL_INVALID_ARGUMENT')
})
