import { Migration } from '@mikro-orm/migrations';

export class Migration20261204182518_cache extends Migration {

  override async up(): Promise<void> {
    this.addSql(`create table \`cache_entry\` (\`key\` text not null, \`provider\` text not null, \`model\` text not null, \`value\` text not null, \`usage\` text null, \`bytes\` integer not null, \`hits\` integer not null, \`created_at\` datetime not null, \`expires_at\` datetime not null, primary key (\`key\`));`);
    this.addSql(`create index \`cache_entry_expires_at_index\` on \`cache_entry\` (\`expires_at\`);`);
    this.addSql(`create index \`cache_entry_model_created_at_index\` on \`cache_entry\` (\`model\`, \`created_at\`);`);

    this.addSql(`alter table \`task\` add column \`coalesced\` integer not null default false;`);
  }

}
