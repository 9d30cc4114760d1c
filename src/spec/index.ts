export * from './server';
export * from './validate';
export * from './identifiers';
